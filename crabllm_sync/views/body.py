"""Reading request bodies: JSON (size and nesting bounded) and multipart."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flask
import orjson
from flask import Request
from pydantic import BaseModel

from crabllm_sync.errors import InvalidRequestError, RequestTooLargeError
from crabllm_sync.multipart import Upload
from crabllm_sync.wire.openai import validate

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway

# Deepest nesting of arrays and objects a JSON body may have; no API body
# comes close (a tool's JSON Schema is a few dozen levels at most). orjson
# parses up to 1024 levels but serialises only 255, and a translated upstream
# body nests the client's values a few levels deeper: a limit well under 255
# means every body we accept can be sent on, and a deeper one is the client's
# 400, not our 500.
MAX_JSON_DEPTH = 128


def parse(
    gw: Gateway,
    endpoint: str,
    model: type[BaseModel],
    *,
    allow_x_api_key: bool = False,
    default_model: str | None = None,
) -> tuple[RequestContext, dict[str, Any]]:
    """authenticate -> read -> validate: the context and the checked body."""
    req = flask.request
    ctx = gw.begin(endpoint, req.headers, allow_x_api_key=allow_x_api_key)
    body = read_json(req)
    if default_model is not None and isinstance(body, dict):
        body.setdefault("model", default_model)
    validate(model, body)
    ctx.no_cache = "no-cache" in req.headers.get("Cache-Control", "")
    return ctx, body


def read_json(request: Request) -> Any:
    """The parsed JSON body; InvalidRequestError says why it cannot be read."""
    data = request.get_data(cache=False)
    refuse_truncated(request, len(data))
    if not data:
        raise InvalidRequestError("request body is empty; send a JSON object")
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None
    # Fewer brackets than the limit cannot nest deeper: most bodies stop here.
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:
        if depth(body) > MAX_JSON_DEPTH:
            raise InvalidRequestError(
                f"request body is nested too deeply: at most {MAX_JSON_DEPTH} "
                "levels of arrays and objects"
            )
    return body


def depth(value: Any) -> int:
    """Levels of arrays and objects in parsed JSON (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def refuse_truncated(request: Request, read: int | None = None) -> None:
    """413 if a body sent without Content-Length (chunked) went past the limit.

    werkzeug stops reading such a body at max_content_length and says nothing,
    so the gateway would parse (or forward) the first max_body_size bytes. One
    more byte from the server's own stream tells a cut body from a whole one.
    `read`: the bytes read, when known (a parsed form does not say).
    """
    limit = request.max_content_length
    if request.content_length is not None or limit is None:
        return
    if read is not None and read < limit:
        return
    if request.environ["wsgi.input"].read(1):
        raise RequestTooLargeError(
            f"request body is larger than max_body_size ({limit} bytes)"
        )


def read_upload(req: Request) -> tuple[dict[str, Any], Upload]:
    """Form fields (repeats as lists) and the `file` part of a multipart request.

    werkzeug spools the file to a temporary file past 500 KB; MAX_CONTENT_LENGTH
    (max_body_size) bounds it with a 413. The file is not read here.
    """
    if req.mimetype != "multipart/form-data":
        raise InvalidRequestError(
            "send multipart/form-data with a 'file' part", param="file"
        )
    file = req.files.get("file")
    refuse_truncated(req)
    if file is None or not file.filename:
        raise InvalidRequestError("'file': is required", param="file")
    fields: dict[str, Any] = {
        k: v[0] if len(v) == 1 else v for k, v in req.form.lists()
    }
    stream = file.stream
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    upload = Upload(
        field="file",
        filename=file.filename,
        content_type=file.mimetype or "application/octet-stream",
        stream=stream,
        size=size,
    )
    return fields, upload
