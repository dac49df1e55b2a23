"""Flask views: parse the request, call the gateway, render the answer.

The shared helpers live in body.py (reading), responses.py (answers and error
handlers) and streaming.py (streamed answers); they are re-exported here.
"""

from __future__ import annotations

from crabllm_sync.views.body import read_json, read_upload, refuse_truncated
from crabllm_sync.views.responses import (
    SSE_HEADERS,
    answer_headers,
    error_response,
    json_response,
    register_error_handlers,
    sse_response,
)
from crabllm_sync.views.streaming import openai_events, stream_body

__all__ = [
    "SSE_HEADERS",
    "answer_headers",
    "error_response",
    "json_response",
    "openai_events",
    "read_json",
    "read_upload",
    "refuse_truncated",
    "register_error_handlers",
    "sse_response",
    "stream_body",
]
