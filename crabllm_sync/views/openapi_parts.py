"""The pieces /openapi.json's paths are made of (pure): references, JSON and
event-stream content, one operation with its error answer, and the path and
query parameters several routes share. views/openapi.py and
views/openapi_gemini.py build their paths from these.
"""

from __future__ import annotations

from typing import Any

from crabllm_sync.keys import model as keys


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": ref(name)}}


def sse_content(event: str, what: str, *, error: str | None = None) -> dict[str, Any]:
    """One server-sent event, as OpenAPI 3.1 tools read `schema` of an event
    stream (3.2 calls it itemSchema): its fields, `data` holding the JSON, or
    OpenAI's final `[DONE]`; a failure after the headers is one `error` event."""
    json_data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": ref(event),
    }
    data: dict[str, Any] = json_data
    if error is not None:
        data = {
            "anyOf": [
                json_data,
                {**json_data, "contentSchema": ref(error)},
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
    return {"text/event-stream": {"schema": one_event, "x-sse-event": ref(event)}}


def operation(
    summary: str,
    responses: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    error: str = "ErrorResponse",
    security: list[dict[str, list[str]]] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": summary,
        "responses": {
            **responses,
            "default": {"description": "error", "content": json_content(error)},
        },
    }
    if body is not None:
        out["requestBody"] = {"required": True, "content": body}
    if security is not None:
        out["security"] = security
    if params:
        out["parameters"] = params
    return out


def ok(content: dict[str, Any] | None = None, description: str = "OK") -> Any:
    out: dict[str, Any] = {"description": description}
    if content is not None:
        out["content"] = content
    return {"200": out}


ANY_JSON = {"application/json": {"schema": {"type": "object"}}}
ANY_LIST = {"application/json": {"schema": {"type": ["array", "object"]}}}
KEY_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": keys.NAME_MAX,
    "pattern": keys.NAME_PATTERN,
}
NAME_PARAM = [{"name": "name", "in": "path", "required": True, "schema": KEY_NAME}]
MODEL_PARAM = [
    {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}
]
ID_PARAM = [
    {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
]
LOG_FILTERS = [
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
PUBLIC: list[dict[str, list[str]]] = []
RESPONSE_ID_PARAM = [
    {
        "name": "response_id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
]
