"""Anthropic Messages API: native wire calls (used as-is by /v1/messages).

OpenAI <-> Anthropic translation for /v1/chat/completions lands in this module
too, in the order of the other providers: Translation, then Public API.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import requests

from crabllm_sync import sse
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment

BASE_URL = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"

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


# -- Native pass-through ----------------------------------------------------


def messages(
    dep: Deployment,
    session: requests.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages with an Anthropic body; the Anthropic answer."""
    return http.post_json(
        session,
        f"{dep.base_url}/messages",
        body,
        headers=native_headers(dep, client_headers),
        timeout=dep.timeout,
        provider=dep.provider,
    )


def messages_stream(
    dep: Deployment,
    session: requests.Session,
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
    return _events(lines)


def count_tokens(
    dep: Deployment,
    session: requests.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages/count_tokens."""
    return http.post_json(
        session,
        f"{dep.base_url}/messages/count_tokens",
        body,
        headers=native_headers(dep, client_headers),
        timeout=dep.timeout,
        provider=dep.provider,
    )


def _events(lines: Iterator[bytes]) -> Iterator[sse.Event]:
    try:
        yield from sse.parse(lines)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
