"""OpenAI and every OpenAI-compatible server: the body passes through as given.

Only the URL and auth header are ours; azure.py reuses this with its own target.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from crabllm_sync import sse
from crabllm_sync.errors import UpstreamError
from crabllm_sync.multipart import MultipartBody, Upload, form_fields
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment

BASE_URL = "https://api.openai.com/v1"
# /v1/responses passes through (formats/responses); unknown OpenAI-compatible
# kinds that use this module speak chat only (providers.native_formats).
NATIVE_FORMATS = frozenset({"responses"})

Target = Callable[[Deployment, str], tuple[str, dict[str, str]]]


def target(dep: Deployment, path: str) -> tuple[str, dict[str, str]]:
    """URL and headers for `path` (e.g. '/chat/completions') on this deployment."""
    headers = dict(http.JSON_HEADERS)
    if dep.api_key:
        headers["authorization"] = f"Bearer {dep.api_key}"
    return dep.base_url + path, headers


def chat(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> dict[str, Any]:
    return _post_json(dep, session, "/chat/completions", body, target)


def chat_stream(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> Iterator[dict[str, Any]]:
    url, headers = target(dep, "/chat/completions")
    headers["accept"] = "text/event-stream"
    lines = http.post_stream(
        session, url, body, headers=headers, timeout=dep.timeout, provider=dep.provider
    )
    return read_chunks(lines, dep.provider)


def responses(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> dict[str, Any]:
    """POST {base}/responses; the Response as it came."""
    return _post_json(dep, session, "/responses", body, target)


def responses_stream(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> Iterator[sse.Event]:
    """POST {base}/responses with stream=true; the native events as they come."""
    url, headers = target(dep, "/responses")
    headers["accept"] = "text/event-stream"
    lines = http.post_stream(
        session, url, body, headers=headers, timeout=dep.timeout, provider=dep.provider
    )
    return read_events(lines)


def read_events(lines: Iterator[bytes]) -> Iterator[sse.Event]:
    try:
        yield from sse.parse(lines)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


def embeddings(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> dict[str, Any]:
    return _post_json(dep, session, "/embeddings", body, target)


def images(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> dict[str, Any]:
    return _post_json(dep, session, "/images/generations", body, target)


def speech(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    target: Target = target,
) -> tuple[str, Iterator[bytes]]:
    """(content type, the audio bytes as they arrive); nothing is buffered."""
    url, headers = target(dep, "/audio/speech")
    content_type, chunks = _post_raw(dep, session, url, headers, orjson.dumps(body))
    return content_type or "application/octet-stream", chunks


def transcription(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    upload: Upload,
    target: Target = target,
) -> tuple[str, bytes]:
    return _audio_upload(dep, session, "/audio/transcriptions", body, upload, target)


def translation(
    dep: Deployment,
    session: http.Session,
    body: dict[str, Any],
    upload: Upload,
    target: Target = target,
) -> tuple[str, bytes]:
    return _audio_upload(dep, session, "/audio/translations", body, upload, target)


def _audio_upload(
    dep: Deployment,
    session: http.Session,
    path: str,
    body: dict[str, Any],
    upload: Upload,
    target: Target,
) -> tuple[str, bytes]:
    """POST the form fields and the file as multipart, the file read in blocks."""
    url, headers = target(dep, path)
    multipart = MultipartBody(form_fields(body), upload, uuid.uuid4().hex)
    headers["content-type"] = multipart.content_type
    content_type, chunks = _post_raw(dep, session, url, headers, multipart)
    return content_type or "application/json", b"".join(chunks)


def _post_raw(
    dep: Deployment,
    session: http.Session,
    url: str,
    headers: dict[str, str],
    data: Any,
) -> tuple[str | None, Iterator[bytes]]:
    """POST `data` accepting any answer: (its content type, its body in pieces)."""
    headers["accept"] = "*/*"
    resp, chunks = http.post_raw(
        session,
        url,
        data=data,
        headers=headers,
        timeout=dep.timeout,
        provider=dep.provider,
    )
    return resp.headers.get("content-type"), chunks


def _post_json(
    dep: Deployment,
    session: http.Session,
    path: str,
    body: dict[str, Any],
    target: Target,
) -> dict[str, Any]:
    url, headers = target(dep, path)
    return http.post_json(
        session, url, body, headers=headers, timeout=dep.timeout, provider=dep.provider
    )


def read_chunks(lines: Iterator[bytes], provider: str) -> Iterator[dict[str, Any]]:
    """OpenAI SSE lines -> chunk dicts, ending at [DONE]; an error event raises."""
    try:
        for event in sse.parse(lines):
            if event.data == "[DONE]":
                # Read on to the end of the body (its terminator is normally in
                # the same packet) so the connection goes back to the pool
                # instead of being closed; the openai SDK drains the same way.
                for _ in lines:
                    pass
                return
            chunk = sse.event_json(event, provider)
            if isinstance(chunk, dict) and "error" in chunk and "choices" not in chunk:
                err = chunk["error"]
                msg = err.get("message") if isinstance(err, dict) else str(err)
                raise UpstreamError(
                    f"{provider}: {msg}", provider=provider, upstream_status=502
                )
            yield chunk
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
