"""Anthropic Messages API wire: models (models.py) and the pure OpenAI
translation: to_chat (request.py), from_chat and usage (response.py),
EventTranslator (stream.py). No I/O, no clock, no randomness.
"""

from __future__ import annotations

from crabllm_sync.wire.anthropic.models import (
    CountTokensRequest,
    CountTokensResponse,
    ErrorResponse,
    MessageResponse,
    MessagesRequest,
    NativeRequest,
    StreamEvent,
)
from crabllm_sync.wire.anthropic.request import to_chat
from crabllm_sync.wire.anthropic.response import (
    event_error,
    event_usage,
    from_chat,
    message_id,
    message_usage,
    stop_reason,
    usage_from_openai,
    usage_to_openai,
)
from crabllm_sync.wire.anthropic.stream import Event, EventTranslator

__all__ = [
    "CountTokensRequest",
    "CountTokensResponse",
    "ErrorResponse",
    "Event",
    "EventTranslator",
    "MessageResponse",
    "MessagesRequest",
    "NativeRequest",
    "StreamEvent",
    "event_error",
    "event_usage",
    "from_chat",
    "message_id",
    "message_usage",
    "stop_reason",
    "to_chat",
    "usage_from_openai",
    "usage_to_openai",
]
