"""GET /openapi.json: OpenAPI 3.1 for every public endpoint, from the wire models.

Request and response schemas come from the pydantic models in wire/, so the
document changes when they do. Streams are described per event (x-sse-event).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from crabllm_sync import __version__
from crabllm_sync.gateway import Gateway
from crabllm_sync.keys import model as keys
from crabllm_sync.views import json_response
from crabllm_sync.wire import anthropic as a
from crabllm_sync.wire import openai as o
from crabllm_sync.wire.responses import ResponsesRequest

ANTHROPIC_PREFIX = "Anthropic"

_OPENAI_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (o.ChatRequest, "validation"),
    (ResponsesRequest, "validation"),
    (o.EmbeddingRequest, "validation"),
    (o.ImageRequest, "validation"),
    (o.SpeechRequest, "validation"),
    (o.TranscriptionRequest, "validation"),
    (o.ChatCompletion, "serialization"),
    (o.ChatCompletionChunk, "serialization"),
    (o.EmbeddingResponse, "serialization"),
    (o.Model, "serialization"),
    (o.ModelList, "serialization"),
    (o.ImagesResponse, "serialization"),
    (o.TranscriptionResponse, "serialization"),
    (o.ErrorResponse, "serialization"),
    (keys.NewKey, "validation"),
    (keys.KeyUpdate, "validation"),
]
_ANTHROPIC_MODELS: list[tuple[type[BaseModel], JsonSchemaMode]] = [
    (a.MessagesRequest, "validation"),
    (a.CountTokensRequest, "validation"),
    (a.MessageResponse, "serialization"),
    (a.CountTokensResponse, "serialization"),
    (a.StreamEvent, "serialization"),
    (a.ErrorResponse, "serialization"),
]


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("openapi", __name__)
    doc = document()

    @bp.get("/openapi.json")
    def openapi() -> Response:
        return json_response(doc)

    return bp


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (pure: built from the models, no I/O)."""
    schemas = {
        **_schemas(_OPENAI_MODELS, ""),
        **_schemas(_ANTHROPIC_MODELS, ANTHROPIC_PREFIX),
    }
    schemas["TranscriptionUpload"] = {
        "allOf": [{"$ref": "#/components/schemas/TranscriptionRequest"}],
        "type": "object",
        # format: binary is how generators and SDKs recognise a file part.
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "contentMediaType": "audio/*",
            }
        },
        "required": ["file", "model"],
    }
    schemas.update(_RESPONSES_SCHEMAS)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "crabllm-sync",
            "version": __version__,
            "description": "An LLM API gateway: OpenAI's API and Anthropic's "
            "Messages API in front of many providers.",
        },
        "components": {
            "schemas": {**schemas, **_gemini_schemas()},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "x-goog-api-key": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-goog-api-key",
                },
                "key": {"type": "apiKey", "in": "query", "name": "key"},
            },
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
    }


def _gemini_schemas() -> dict[str, Any]:
    from crabllm_sync.views import openapi_gemini

    return openapi_gemini.SCHEMAS


def _schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]], prefix: str
) -> dict[str, Any]:
    _, top = models_json_schema(
        models, ref_template=f"#/components/schemas/{prefix}{{model}}"
    )
    return {f"{prefix}{name}": schema for name, schema in top["$defs"].items()}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _sse(event: str, what: str, *, error: str | None = None) -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 tools read `schema` of an event
    stream (3.2 calls it itemSchema): its fields, `data` holding the JSON, or
    OpenAI's final `[DONE]`; a failure after the headers is one `error` event."""
    json_data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": _ref(event),
    }
    data: dict[str, Any] = json_data
    if error is not None:
        data = {
            "anyOf": [
                json_data,
                {**json_data, "contentSchema": _ref(error)},
                {"const": "[DONE]"},
            ]
        }
    one_event = {
        "type": "object",
        "description": what,
        "properties": {
            "event": {"type": "string"},
            "data": data,
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
        "required": ["data"],
    }
    return {"text/event-stream": {"schema": one_event, "x-sse-event": _ref(event)}}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    error: str = "ErrorResponse",
    security: list[dict[str, list[str]]] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {
            **responses,
            "default": {"description": "error", "content": _json(error)},
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": body}
    if security is not None:
        op["security"] = security
    if params:
        op["parameters"] = params
    return op


def _ok(content: dict[str, Any] | None = None, description: str = "OK") -> Any:
    out: dict[str, Any] = {"description": description}
    if content is not None:
        out["content"] = content
    return {"200": out}


_ANY_JSON = {"application/json": {"schema": {"type": "object"}}}
_ANY_LIST = {"application/json": {"schema": {"type": ["array", "object"]}}}
_KEY_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": keys.NAME_MAX,
    "pattern": keys.NAME_PATTERN,
}
_NAME = [{"name": "name", "in": "path", "required": True, "schema": _KEY_NAME}]
_MODEL = [
    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
]
_ID = [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}]
_LOG_FILTERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": what,
    }
    for name, schema, what in (
        ("key", {"type": "string"}, "key name"),
        ("model", {"type": "string"}, "resolved model"),
        ("provider", {"type": "string"}, "provider name"),
        ("status", {"type": "string"}, "a status code, 2xx, 4xx, 5xx or error"),
        ("since", {"type": "string"}, "epoch seconds or ISO 8601 (UTC)"),
        ("until", {"type": "string"}, "epoch seconds or ISO 8601 (UTC)"),
        ("request_id", {"type": "string"}, "the x-request-id of one request"),
        ("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "page size"),
        ("after", {"type": "string"}, "the cursor of the next page"),
    )
]
_PUBLIC: list[dict[str, list[str]]] = []
_RESPONSE_ID = [
    {
        "name": "response_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
]
# The Response object and its stream events, as OpenAI's API reference
# defines them (the openai SDK's types are the full shape); the fields every
# one has are listed here.
_RESPONSES_SCHEMAS: dict[str, Any] = {
    "Response": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "response"},
            "created_at": {"type": "number"},
            "status": {"enum": ["completed", "failed", "in_progress", "incomplete"]},
            "model": {"type": "string"},
            "output": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": ["object", "null"]},
        },
        "required": ["id", "object", "created_at", "model", "output"],
    },
    "ResponseStreamEvent": {
        "type": "object",
        "properties": {
            "type": {"type": "string"},
            "sequence_number": {"type": "integer", "minimum": 0},
        },
        "required": ["type", "sequence_number"],
    },
    "ResponseInputItemList": {
        "type": "object",
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"type": "object"}},
            "first_id": {"type": ["string", "null"]},
            "last_id": {"type": ["string", "null"]},
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "has_more"],
    },
}
_ANTHROPIC_AUTH = [{"x-api-key": []}, {"bearer": []}]


def _paths() -> dict[str, Any]:
    from crabllm_sync.views import openapi_gemini  # it builds on the helpers here

    ae = f"{ANTHROPIC_PREFIX}ErrorResponse"
    return {
        **openapi_gemini.paths(),
        "/v1/chat/completions": {
            "post": _op(
                "Chat completion; `stream: true` answers SSE chunks then [DONE]",
                _ok(
                    {
                        **_json("ChatCompletion"),
                        **_sse(
                            "ChatCompletionChunk",
                            "data: {chunk} ... [DONE]",
                            error="ErrorResponse",
                        ),
                    }
                ),
                body=_json("ChatRequest"),
            )
        },
        "/v1/responses": {
            "post": _op(
                "OpenAI Responses API, to any configured model (native on "
                "openai and azure, bridged elsewhere); `stream: true` answers "
                "named events",
                _ok(
                    {
                        **_json("Response"),
                        **_sse(
                            "ResponseStreamEvent",
                            "event: response.created, response.in_progress, "
                            "response.output_item.added ... response.completed",
                        ),
                    }
                ),
                body=_json("ResponsesRequest"),
            )
        },
        "/v1/responses/{response_id}": {
            "get": _op(
                "A stored response (of this key)",
                _ok(_json("Response")),
                params=_RESPONSE_ID,
            ),
            "delete": _op(
                "Delete a stored response (of this key)",
                _ok(_ANY_JSON),
                params=_RESPONSE_ID,
            ),
        },
        "/v1/responses/{response_id}/input_items": {
            "get": _op(
                "The input items of a stored response (after, limit, order)",
                _ok(_json("ResponseInputItemList")),
                params=_RESPONSE_ID,
            )
        },
        "/v1/embeddings": {
            "post": _op(
                "Embeddings",
                _ok(_json("EmbeddingResponse")),
                body=_json("EmbeddingRequest"),
            )
        },
        "/v1/models": {"get": _op("Models this key may use", _ok(_json("ModelList")))},
        "/v1/models/{model}": {
            "get": _op("One model", _ok(_json("Model")), params=_MODEL)
        },
        "/v1/images/generations": {
            "post": _op(
                "Image generation",
                _ok(_json("ImagesResponse")),
                body=_json("ImageRequest"),
            )
        },
        "/v1/audio/speech": {
            "post": _op(
                "Text to speech; the audio bytes are streamed as they arrive",
                _ok({"audio/*": {"schema": {"type": "string", "format": "binary"}}}),
                body=_json("SpeechRequest"),
            )
        },
        "/v1/audio/transcriptions": {
            "post": _op(
                "Transcription of an uploaded audio file",
                _ok(
                    {
                        **_json("TranscriptionResponse"),
                        "text/plain": {"schema": {"type": "string"}},
                    }
                ),
                body={"multipart/form-data": {"schema": _ref("TranscriptionUpload")}},
            )
        },
        "/v1/audio/translations": {
            "post": _op(
                "Translation to English of an uploaded audio file",
                _ok(
                    {
                        **_json("TranscriptionResponse"),
                        "text/plain": {"schema": {"type": "string"}},
                    }
                ),
                body={"multipart/form-data": {"schema": _ref("TranscriptionUpload")}},
            )
        },
        "/v1/messages": {
            "post": _op(
                "Anthropic Messages API, to any configured model",
                _ok(
                    {
                        **_json(f"{ANTHROPIC_PREFIX}MessageResponse"),
                        **_sse(
                            f"{ANTHROPIC_PREFIX}StreamEvent",
                            "event: message_start, content_block_start / _delta / "
                            "_stop, message_delta, message_stop",
                        ),
                    }
                ),
                body=_json(f"{ANTHROPIC_PREFIX}MessagesRequest"),
                error=ae,
                security=_ANTHROPIC_AUTH,
            )
        },
        "/v1/messages/count_tokens": {
            "post": _op(
                "Anthropic token count (anthropic-kind: counted; else estimated)",
                _ok(_json(f"{ANTHROPIC_PREFIX}CountTokensResponse")),
                body=_json(f"{ANTHROPIC_PREFIX}CountTokensRequest"),
                error=ae,
                security=_ANTHROPIC_AUTH,
            )
        },
        "/v1/usage": {"get": _op("Usage rows per key and model", _ok(_ANY_LIST))},
        "/v1/budget": {"get": _op("Spent, budget, remaining per key", _ok(_ANY_LIST))},
        "/v1/cache": {
            "delete": _op("Clear the response cache (admin)", _ok(_ANY_JSON))
        },
        "/v1/admin/keys": {
            "get": _op("List keys (admin)", _ok(_ANY_LIST)),
            "post": _op(
                "Create a key (admin); the secret is shown once",
                {
                    "201": {"description": "created", "content": _ANY_JSON},
                    **_ok(_ANY_JSON),
                },
                body=_json("NewKey"),
            ),
        },
        "/v1/admin/keys/{name}": {
            "get": _op("Show a key (admin)", _ok(_ANY_JSON), params=_NAME),
            "patch": _op(
                "Update a key (admin)",
                _ok(_ANY_JSON),
                body=_json("KeyUpdate"),
                params=_NAME,
            ),
            "delete": _op("Revoke a key (admin)", _ok(_ANY_JSON), params=_NAME),
        },
        "/v1/admin/logs": {
            "get": _op(
                "The request log, newest first, filtered (admin); "
                "`after` is the previous page's next_cursor",
                _ok(_ANY_LIST),
                params=_LOG_FILTERS,
            )
        },
        "/v1/admin/logs/{id}": {
            "get": _op("One request log record (admin)", _ok(_ANY_JSON), params=_ID)
        },
        "/v1/admin/usage": {
            "get": _op("Every key's usage rows (admin)", _ok(_ANY_LIST))
        },
        "/v1/admin/providers": {
            "get": _op("List providers (admin); secrets masked", _ok(_ANY_LIST)),
            "post": _op(
                "Add a provider at run time (admin)",
                {
                    "201": {"description": "added", "content": _ANY_JSON},
                    **_ok(_ANY_JSON),
                },
                body=_ANY_JSON,
            ),
        },
        "/v1/admin/providers/{name}": {
            "get": _op("Show a provider (admin)", _ok(_ANY_JSON), params=_NAME),
            "patch": _op(
                "Change a run-time provider (admin)",
                _ok(_ANY_JSON),
                body=_ANY_JSON,
                params=_NAME,
            ),
            "delete": _op(
                "Remove a run-time provider (admin)", _ok(_ANY_JSON), params=_NAME
            ),
        },
        "/health": {
            "get": _op(
                "Liveness",
                _ok({"application/json": {"schema": {"type": "object"}}}),
                security=_PUBLIC,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus text format (metrics or admin token)",
                _ok({"text/plain": {"schema": {"type": "string"}}}),
            )
        },
        "/openapi.json": {
            "get": _op("This document", _ok(_ANY_JSON), security=_PUBLIC)
        },
    }
