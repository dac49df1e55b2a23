"""The components of /openapi.json (pure): schemas generated from the
pydantic models in wire/ (so the document changes when they do), the ones
written by hand (the Responses API's objects, the transcription upload,
Gemini's), and the security schemes.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from crabllm_sync.keys import model as keys
from crabllm_sync.views import openapi_gemini
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


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "x-goog-api-key": {
        "type": "apiKey",
        "in": "header",
        "name": "x-goog-api-key",
    },
    "key": {"type": "apiKey", "in": "query", "name": "key"},
}

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


def schemas() -> dict[str, Any]:
    """Every component schema, by name."""
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
    return {**schemas, **openapi_gemini.SCHEMAS}


def _schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]], prefix: str
) -> dict[str, Any]:
    _, top = models_json_schema(
        models, ref_template=f"#/components/schemas/{prefix}{{model}}"
    )
    return {f"{prefix}{name}": schema for name, schema in top["$defs"].items()}
