"""Anthropic Messages API adapter: the transport calls, native (used as-is by
/v1/messages) and behind /v1/chat/completions; the only I/O of this package.

Translation lives in request.py, response.py and stream.py (pure).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

from crabllm_sync import sse
from crabllm_sync.providers import http
from crabllm_sync.providers.anthropic.request import (
    DEFAULT_MAX_TOKENS,
    THINKING_BUDGETS,
    translate_request,
)
from crabllm_sync.providers.anthropic.response import (
    map_stop_reason,
    map_usage,
    translate_response,
)
from crabllm_sync.providers.anthropic.stream import ChunkTranslator, _chunks
from crabllm_sync.providers.shape import read_stream, reading
from crabllm_sync.routing import Deployment

__all__ = [
    "API_VERSION",
    "BASE_URL",
    "DEFAULT_MAX_TOKENS",
    "NATIVE_FORMATS",
    "PASSTHROUGH_HEADERS",
    "THINKING_BUDGETS",
    "ChunkTranslator",
    "chat",
    "chat_stream",
    "count_tokens",
    "map_stop_reason",
    "map_usage",
    "messages",
    "messages_stream",
    "native_headers",
    "translate_request",
    "translate_response",
]


BASE_URL = "https://api.anthropic.com/v1"

API_VERSION = "2023-06-01"

# Client formats this provider takes as they are (formats/messages.py).
NATIVE_FORMATS = frozenset({"messages"})

# Client headers forwarded on native calls (beta features and the like).
PASSTHROUGH_HEADERS = ("anthropic-beta",)


def native_headers(
    dep: Deployment, client_headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "anthropic-version": API_VERSION,
    }
    if dep.api_key:
        headers["x-api-key"] = dep.api_key
    for name in PASSTHROUGH_HEADERS:
        value = (client_headers or {}).get(name)
        if value:
            headers[name] = value
    return headers


def messages(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages with an Anthropic body; the Anthropic answer."""
    return _post_json(dep, session, "messages", body, client_headers)


def messages_stream(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> Iterator[sse.Event]:
    """POST {base}/messages with stream=true; the native SSE events as they come."""
    headers = native_headers(dep, client_headers)
    headers["accept"] = "text/event-stream"
    lines = http.post_stream(
        session,
        f"{dep.base_url}/messages",
        body,
        headers=headers,
        timeout=dep.timeout,
        provider=dep.provider,
    )
    return sse.read(lines)


def count_tokens(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages/count_tokens."""
    return _post_json(dep, session, "messages/count_tokens", body, client_headers)


def _post_json(
    dep: Deployment,
    session: http.Session,
    path: str,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    return http.post_json(
        session,
        f"{dep.base_url}/{path}",
        body,
        headers=native_headers(dep, client_headers),
        timeout=dep.timeout,
        provider=dep.provider,
    )


def chat(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    """An OpenAI chat completion answered by the Messages API."""
    native = messages(dep, session, translate_request(body, dep))
    with reading(dep.provider):
        return translate_response(native, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """OpenAI chunks translated from the Messages stream as events arrive."""
    native = {**translate_request(body, dep), "stream": True}
    translator = ChunkTranslator(
        created=int(time.time()),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        provider=dep.provider,
    )
    chunks = _chunks(messages_stream(dep, session, native), translator, dep.provider)
    return read_stream(chunks, dep.provider)
