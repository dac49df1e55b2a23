"""Google Gemini adapter behind the OpenAI chat and embeddings API: chat(),
chat_stream() and embeddings() each make one call through providers/http.
The Gemini API itself (formats/gemini) passes through as it is:
generate_content(), generate_content_stream() and count_gemini_tokens().

Translation (request.py, response.py, stream.py, embeddings.py) is pure.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from crabllm_sync.errors import UpstreamError
from crabllm_sync.providers import http
from crabllm_sync.providers.google.embeddings import (
    translate_embeddings_request,
    translate_embeddings_response,
)
from crabllm_sync.providers.google.messages import PROVIDER
from crabllm_sync.providers.google.request import _model_path, translate_request
from crabllm_sync.providers.google.response import (
    map_finish_reason,
    map_usage,
    translate_response,
)
from crabllm_sync.providers.google.stream import (
    ChunkTranslator,
    _read_chunks,
    read_events,
)
from crabllm_sync.providers.shape import read_stream, reading
from crabllm_sync.routing import Deployment

__all__ = [
    "BASE_URL",
    "NATIVE_FORMATS",
    "PROVIDER",
    "ChunkTranslator",
    "chat",
    "chat_stream",
    "count_gemini_tokens",
    "embeddings",
    "generate_content",
    "generate_content_stream",
    "map_finish_reason",
    "map_usage",
    "translate_embeddings_request",
    "translate_embeddings_response",
    "translate_request",
    "translate_response",
]


BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

# The Gemini API's own requests pass through with no translation.
NATIVE_FORMATS = frozenset({"gemini"})


def _headers(dep: Deployment, accept: str = "application/json") -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": accept}
    if dep.api_key:
        headers["x-goog-api-key"] = dep.api_key
    return headers


def _post(
    dep: Deployment,
    post: Any,
    session: http.Session,
    method: str,
    native: dict[str, Any],
    accept: str = "application/json",
) -> Any:
    """POST to one of the model's methods (post_json or post_stream); Gemini's
    400 for a bad key is an auth failure."""
    try:
        return post(
            session,
            f"{dep.base_url}/{_model_path(dep.model)}:{method}",
            native,
            headers=_headers(dep, accept),
            timeout=dep.timeout,
            provider=dep.provider,
        )
    except UpstreamError as err:
        # Gemini answers 400 INVALID_ARGUMENT (API_KEY_INVALID) for a wrong key:
        # the gateway's key is at fault, not the client's request.
        if err.upstream_status == 400 and "API key not valid" in err.message:
            raise UpstreamError(
                f"{dep.provider}: authentication with the provider failed: "
                "API key not valid",
                upstream_status=401,
                provider=dep.provider,
            ) from err
        raise


def chat(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    native = translate_request(body)
    answer = _post(dep, http.post_json, session, "generateContent", native)
    with reading(dep.provider):
        return translate_response(answer, model=dep.model, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    native = translate_request(body)
    method = "streamGenerateContent?alt=sse"
    lines = _post(dep, http.post_stream, session, method, native, "text/event-stream")
    translator = ChunkTranslator(
        dep.model,
        int(time.time()),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        provider=dep.provider,
    )
    return read_stream(_read_chunks(lines, translator), dep.provider)


def embeddings(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    native = translate_embeddings_request(body, dep.model)
    answer = _post(dep, http.post_json, session, "batchEmbedContents", native)
    with reading(dep.provider):
        return translate_embeddings_response(
            answer, model=dep.model, encoding_format=body.get("encoding_format")
        )


def _native_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Gemini request as the client sent it (the model is in the URL)."""
    return {k: v for k, v in body.items() if k != "model"}


def generate_content(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    """A Gemini generateContent call passed through."""
    return _post(dep, http.post_json, session, "generateContent", _native_body(body))


def generate_content_stream(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """streamGenerateContent passed through: each event as Gemini sent it."""
    method = "streamGenerateContent?alt=sse"
    native = _native_body(body)
    lines = _post(dep, http.post_stream, session, method, native, "text/event-stream")
    return read_stream(read_events(lines, dep.provider), dep.provider)


def count_gemini_tokens(
    dep: Deployment, session: http.Session, body: dict[str, Any]
) -> dict[str, Any]:
    """countTokens passed through."""
    return _post(dep, http.post_json, session, "countTokens", _native_body(body))
