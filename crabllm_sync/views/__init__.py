"""Flask views: parse the request, call the gateway, render the answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
from flask import Request, Response

from crabllm_sync import errors
from crabllm_sync.errors import GatewayError, InvalidRequestError

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def read_json(request: Request) -> Any:
    """The parsed JSON body; InvalidRequestError says why it cannot be read."""
    data = request.get_data(cache=False)
    if not data:
        raise InvalidRequestError("request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status=status, headers=headers, mimetype="application/json"
    )


def error_response(
    err: GatewayError, render: Callable[[GatewayError], Any]
) -> Response:
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


def openai_events(chunks: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    """Chunks -> `data:` events, `[DONE]` at the end, or one final error event."""
    from crabllm_sync import sse

    try:
        for chunk in chunks:
            yield sse.encode(chunk)
    except GatewayError as err:
        yield sse.encode(errors.to_openai(err))
        return
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    yield sse.DONE
