"""GET /openapi.json: OpenAPI 3.1 for every public endpoint, from the wire models.

This module is the view and the paths; the component schemas (generated from
the pydantic models in wire/, so the document changes when they do) are in
openapi_schemas.py, the pieces a path is made of in openapi_parts.py, and the
Gemini API's paths in openapi_gemini.py. Streams are described per event
(x-sse-event).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from crabllm_sync import __version__
from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response, openapi_gemini, openapi_schemas
from crabllm_sync.views.openapi_parts import (
    ANY_JSON,
    ANY_LIST,
    ID_PARAM,
    LOG_FILTERS,
    MODEL_PARAM,
    NAME_PARAM,
    PUBLIC,
    RESPONSE_ID_PARAM,
    json_content,
    ok,
    operation,
    ref,
    sse_content,
)
from crabllm_sync.views.openapi_schemas import ANTHROPIC_PREFIX


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("openapi", __name__)
    doc = document()

    @bp.get("/openapi.json")
    def openapi() -> Response:
        return json_response(doc)

    return bp


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (pure: built from the models, no I/O)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crabllm-sync",
            "version": __version__,
            "description": "An LLM API gateway: OpenAI's API and Anthropic's "
            "Messages API in front of many providers.",
        },
        "components": {
            "schemas": openapi_schemas.schemas(),
            "securitySchemes": openapi_schemas.SECURITY_SCHEMES,
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
    }


_ANTHROPIC_AUTH = [{"x-api-key": []}, {"bearer": []}]


def _paths() -> dict[str, Any]:
    ae = f"{ANTHROPIC_PREFIX}ErrorResponse"
    return {
        **openapi_gemini.paths(),
        "/v1/chat/completions": {
            "post": operation(
                "Chat completion; `stream: true` answers SSE chunks then [DONE]",
                ok(
                    {
                        **json_content("ChatCompletion"),
                        **sse_content(
                            "ChatCompletionChunk",
                            "data: {chunk} ... [DONE]",
                            error="ErrorResponse",
                        ),
                    }
                ),
                body=json_content("ChatRequest"),
            )
        },
        "/v1/responses": {
            "post": operation(
                "OpenAI Responses API, to any configured model (native on "
                "openai and azure, bridged elsewhere); `stream: true` answers "
                "named events",
                ok(
                    {
                        **json_content("Response"),
                        **sse_content(
                            "ResponseStreamEvent",
                            "event: response.created, response.in_progress, "
                            "response.output_item.added ... response.completed",
                        ),
                    }
                ),
                body=json_content("ResponsesRequest"),
            )
        },
        "/v1/responses/{response_id}": {
            "get": operation(
                "A stored response (of this key)",
                ok(json_content("Response")),
                params=RESPONSE_ID_PARAM,
            ),
            "delete": operation(
                "Delete a stored response (of this key)",
                ok(ANY_JSON),
                params=RESPONSE_ID_PARAM,
            ),
        },
        "/v1/responses/{response_id}/input_items": {
            "get": operation(
                "The input items of a stored response (after, limit, order)",
                ok(json_content("ResponseInputItemList")),
                params=RESPONSE_ID_PARAM,
            )
        },
        "/v1/embeddings": {
            "post": operation(
                "Embeddings",
                ok(json_content("EmbeddingResponse")),
                body=json_content("EmbeddingRequest"),
            )
        },
        "/v1/models": {
            "get": operation("Models this key may use", ok(json_content("ModelList")))
        },
        "/v1/models/{model}": {
            "get": operation("One model", ok(json_content("Model")), params=MODEL_PARAM)
        },
        "/v1/images/generations": {
            "post": operation(
                "Image generation",
                ok(json_content("ImagesResponse")),
                body=json_content("ImageRequest"),
            )
        },
        "/v1/audio/speech": {
            "post": operation(
                "Text to speech; the audio bytes are streamed as they arrive",
                ok({"audio/*": {"schema": {"type": "string", "format": "binary"}}}),
                body=json_content("SpeechRequest"),
            )
        },
        "/v1/audio/transcriptions": _audio_upload(
            "Transcription of an uploaded audio file"
        ),
        "/v1/audio/translations": _audio_upload(
            "Translation to English of an uploaded audio file"
        ),
        "/v1/messages": {
            "post": operation(
                "Anthropic Messages API, to any configured model",
                ok(
                    {
                        **json_content(f"{ANTHROPIC_PREFIX}MessageResponse"),
                        **sse_content(
                            f"{ANTHROPIC_PREFIX}StreamEvent",
                            "event: message_start, content_block_start / _delta / "
                            "_stop, message_delta, message_stop",
                        ),
                    }
                ),
                body=json_content(f"{ANTHROPIC_PREFIX}MessagesRequest"),
                error=ae,
                security=_ANTHROPIC_AUTH,
            )
        },
        "/v1/messages/count_tokens": {
            "post": operation(
                "Anthropic token count (anthropic-kind: counted; else estimated)",
                ok(json_content(f"{ANTHROPIC_PREFIX}CountTokensResponse")),
                body=json_content(f"{ANTHROPIC_PREFIX}CountTokensRequest"),
                error=ae,
                security=_ANTHROPIC_AUTH,
            )
        },
        "/v1/usage": {"get": operation("Usage rows per key and model", ok(ANY_LIST))},
        "/v1/budget": {
            "get": operation("Spent, budget, remaining per key", ok(ANY_LIST))
        },
        "/v1/cache": {
            "delete": operation("Clear the response cache (admin)", ok(ANY_JSON))
        },
        "/v1/admin/keys": {
            "get": operation("List keys (admin)", ok(ANY_LIST)),
            "post": operation(
                "Create a key (admin); the secret is shown once",
                {
                    "201": {"description": "created", "content": ANY_JSON},
                    **ok(ANY_JSON),
                },
                body=json_content("NewKey"),
            ),
        },
        "/v1/admin/keys/{name}": {
            "get": operation("Show a key (admin)", ok(ANY_JSON), params=NAME_PARAM),
            "patch": operation(
                "Update a key (admin)",
                ok(ANY_JSON),
                body=json_content("KeyUpdate"),
                params=NAME_PARAM,
            ),
            "delete": operation(
                "Revoke a key (admin)", ok(ANY_JSON), params=NAME_PARAM
            ),
        },
        "/v1/admin/logs": {
            "get": operation(
                "The request log, newest first, filtered (admin); "
                "`after` is the previous page's next_cursor",
                ok(ANY_LIST),
                params=LOG_FILTERS,
            )
        },
        "/v1/admin/logs/{id}": {
            "get": operation(
                "One request log record (admin)", ok(ANY_JSON), params=ID_PARAM
            )
        },
        "/v1/admin/usage": {
            "get": operation("Every key's usage rows (admin)", ok(ANY_LIST))
        },
        "/v1/admin/providers": {
            "get": operation("List providers (admin); secrets masked", ok(ANY_LIST)),
            "post": operation(
                "Add a provider at run time (admin)",
                {
                    "201": {"description": "added", "content": ANY_JSON},
                    **ok(ANY_JSON),
                },
                body=ANY_JSON,
            ),
        },
        "/v1/admin/providers/{name}": {
            "get": operation(
                "Show a provider (admin)", ok(ANY_JSON), params=NAME_PARAM
            ),
            "patch": operation(
                "Change a run-time provider (admin)",
                ok(ANY_JSON),
                body=ANY_JSON,
                params=NAME_PARAM,
            ),
            "delete": operation(
                "Remove a run-time provider (admin)", ok(ANY_JSON), params=NAME_PARAM
            ),
        },
        "/health": {
            "get": operation(
                "Liveness",
                ok({"application/json": {"schema": {"type": "object"}}}),
                security=PUBLIC,
            )
        },
        "/metrics": {
            "get": operation(
                "Prometheus text format (metrics or admin token)",
                ok({"text/plain": {"schema": {"type": "string"}}}),
            )
        },
        "/openapi.json": {
            "get": operation("This document", ok(ANY_JSON), security=PUBLIC)
        },
    }


def _audio_upload(summary: str) -> dict[str, Any]:
    """An uploaded audio file answered with its text (JSON or plain)."""
    return {
        "post": operation(
            summary,
            ok(
                {
                    **json_content("TranscriptionResponse"),
                    "text/plain": {"schema": {"type": "string"}},
                }
            ),
            body={"multipart/form-data": {"schema": ref("TranscriptionUpload")}},
        )
    }
