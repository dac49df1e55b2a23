"""The Gemini API's part of /openapi.json (views/gemini.py's routes)."""

from __future__ import annotations

from typing import Any

from crabllm_sync.views.openapi_parts import (
    MODEL_PARAM,
    json_content,
    ok,
    operation,
    sse_content,
)

_GEMINI_AUTH = [{"x-goog-api-key": []}, {"key": []}]
# Google's own shapes, described loosely: the gateway reads only `contents`.
SCHEMAS = {
    "GeminiObject": {
        "type": "object",
        "description": "A Gemini API request or answer, as Google documents it",
    },
    "GeminiErrorResponse": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "status"],
                "properties": {
                    "code": {"type": "integer"},
                    "message": {"type": "string"},
                    "status": {"type": "string"},
                },
            }
        },
    },
}
_GEMINI_METHODS = {
    "generateContent": "Gemini generateContent, to any configured model",
    "streamGenerateContent": "Gemini streamed generation: SSE with alt=sse, "
    "else one JSON array",
    "countTokens": "Gemini countTokens (google-kind: counted; else estimated)",
    "embedContent": "Gemini embedContent, to any embedding model",
    "batchEmbedContents": "Gemini batchEmbedContents, to any embedding model",
}


def paths() -> dict[str, Any]:
    ge = "GeminiErrorResponse"
    paths: dict[str, Any] = {
        f"/v1beta/models/{{model}}:{method}": {
            "post": operation(
                summary,
                ok(
                    {
                        **json_content("GeminiObject"),
                        **(
                            sse_content("GeminiObject", "one GenerateContentResponse")
                            if method == "streamGenerateContent"
                            else {}
                        ),
                    }
                ),
                body=json_content("GeminiObject"),
                error=ge,
                security=_GEMINI_AUTH,
                params=MODEL_PARAM,
            )
        }
        for method, summary in _GEMINI_METHODS.items()
    }
    paths["/v1beta/models"] = {
        "get": operation(
            "Gemini models.list",
            ok(json_content("GeminiObject")),
            error=ge,
            security=_GEMINI_AUTH,
        )
    }
    paths["/v1beta/models/{model}"] = {
        "get": operation(
            "Gemini models.get",
            ok(json_content("GeminiObject")),
            error=ge,
            security=_GEMINI_AUTH,
            params=MODEL_PARAM,
        )
    }
    return paths
