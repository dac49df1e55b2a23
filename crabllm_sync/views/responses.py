"""Building responses: JSON (upstream bytes kept verbatim), errors, SSE, and
the error handlers every blueprint registers in its client's error shape."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException

from crabllm_sync import errors
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError, InternalError
from crabllm_sync.wire.verbatim import raw_json

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}

Render = Callable[[GatewayError], Any]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """`body` as JSON; an upstream's unchanged answer as the bytes it came in."""
    data = raw_json(body)
    return Response(
        orjson.dumps(body) if data is None else data,
        status=status,
        headers=headers,
        mimetype="application/json",
    )


def error_response(err: GatewayError, render: Render) -> Response:
    return json_response(render(err), err.http_status, err.headers)


def sse_response(
    events: Iterable[bytes], headers: Mapping[str, str] | None = None
) -> Response:
    """A streamed text/event-stream response; headers are fixed before the body."""
    return Response(
        events,
        mimetype="text/event-stream",
        headers={**SSE_HEADERS, **(headers or {})},
        direct_passthrough=True,
    )


def answer_headers(ctx: RequestContext) -> dict[str, str]:
    """The headers extensions set, and whether the answer came from the cache."""
    headers = dict(ctx.headers)
    if ctx.cache_hit:
        headers["x-crabllm-cache"] = "hit"
    return headers


def register_error_handlers(
    target: Flask | Blueprint, render: Render, render_http: Callable[[], Render]
) -> None:
    """Every error `target` raises, in one shape: a GatewayError as `render`
    makes it, a werkzeug HTTPException as `render_http()` picks, anything
    else (a bug outside the pipeline) as a logged 500."""

    @target.errorhandler(GatewayError)
    def gateway_error(err: GatewayError) -> Response:
        return error_response(err, render)

    @target.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        err = errors.from_http_status(exc.code or 500, exc.description or exc.name)
        return error_response(err, render_http())

    @target.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("internal error")
        return error_response(InternalError(), render)
