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


class Api:
    """OpenAI's endpoints on the deployment `target` addresses: OpenAI's own
    here, Azure's deployment URLs in azure.py. A module exposes its bound
    methods as its adapter functions."""

    def __init__(self, target: Target) -> None:
        self.target = target

    def chat(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._post_json(dep, session, "/chat/completions", body)

    def chat_stream(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        lines = self._post_stream(dep, session, "/chat/completions", body)
        return read_chunks(lines, dep.provider)

    def responses(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST {base}/responses; the Response as it came."""
        return self._post_json(dep, session, "/responses", body)

    def responses_stream(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> Iterator[sse.Event]:
        """POST {base}/responses with stream=true; the native events as they come."""
        return sse.read(self._post_stream(dep, session, "/responses", body))

    def embeddings(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._post_json(dep, session, "/embeddings", body)

    def images(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> dict[str, Any]:
        return self._post_json(dep, session, "/images/generations", body)

    def speech(
        self, dep: Deployment, session: http.Session, body: dict[str, Any]
    ) -> tuple[str, Iterator[bytes]]:
        """(content type, the audio bytes as they arrive); nothing is buffered."""
        url, headers = self.target(dep, "/audio/speech")
        content_type, chunks = _post_raw(dep, session, url, headers, orjson.dumps(body))
        return content_type or "application/octet-stream", chunks

    def transcription(
        self,
        dep: Deployment,
        session: http.Session,
        body: dict[str, Any],
        upload: Upload,
    ) -> tuple[str, bytes]:
        return self._audio_upload(dep, session, "/audio/transcriptions", body, upload)

    def translation(
        self,
        dep: Deployment,
        session: http.Session,
        body: dict[str, Any],
        upload: Upload,
    ) -> tuple[str, bytes]:
        return self._audio_upload(dep, session, "/audio/translations", body, upload)

    def _audio_upload(
        self,
        dep: Deployment,
        session: http.Session,
        path: str,
        body: dict[str, Any],
        upload: Upload,
    ) -> tuple[str, bytes]:
        """POST the form fields and the file as multipart, the file read in blocks."""
        url, headers = self.target(dep, path)
        multipart = MultipartBody(form_fields(body), upload, uuid.uuid4().hex)
        headers["content-type"] = multipart.content_type
        content_type, chunks = _post_raw(dep, session, url, headers, multipart)
        return content_type or "application/json", b"".join(chunks)

    def _post_stream(
        self, dep: Deployment, session: http.Session, path: str, body: dict[str, Any]
    ) -> Iterator[bytes]:
        """POST for an event stream; the SSE lines as they arrive."""
        url, headers = self.target(dep, path)
        headers["accept"] = "text/event-stream"
        return http.post_stream(
            session,
            url,
            body,
            headers=headers,
            timeout=dep.timeout,
            provider=dep.provider,
        )

    def _post_json(
        self, dep: Deployment, session: http.Session, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        url, headers = self.target(dep, path)
        return http.post_json(
            session,
            url,
            body,
            headers=headers,
            timeout=dep.timeout,
            provider=dep.provider,
        )


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


_API = Api(target)
chat = _API.chat
chat_stream = _API.chat_stream
responses = _API.responses
responses_stream = _API.responses_stream
embeddings = _API.embeddings
images = _API.images
speech = _API.speech
transcription = _API.transcription
translation = _API.translation


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
