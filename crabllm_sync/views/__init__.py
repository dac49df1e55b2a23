"""Flask views: parse the request, call the gateway, render the answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson
from flask import Request, Response

from crabllm_sync import errors
from crabllm_sync.errors import (
    GatewayError,
    InvalidRequestError,
    RequestTooLargeError,
)
from crabllm_sync.wire.verbatim import raw_json

log = logging.getLogger(__name__)

SSE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx: pass each event on at once
}


def read_json(request: Request) -> Any:
    """The parsed JSON body; InvalidRequestError says why it cannot be read."""
    data = request.get_data(cache=False)
    refuse_truncated(request, len(data))
    if not data:
        raise InvalidRequestError("request body is empty; send a JSON object")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"request body is not valid JSON: {exc}") from None


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


def openai_events(
    chunks: Iterator[dict[str, Any]], *, keepalive: float | None = None
) -> Iterator[bytes]:
    """Chunks -> `data:` events, `[DONE]` at the end, or one final error event.

    Chunks that were ready together go out in one write (streams.paced). With
    `keepalive`, an SSE comment goes out after each `keepalive` seconds without
    a chunk (and a client that left is noticed then: see streams.py).
    """
    from crabllm_sync import sse, streams

    batches = streams.paced(chunks, keepalive)
    try:
        for batch in batches:
            if batch.is_pause:
                yield sse.KEEPALIVE
                continue
            data = b"".join([sse.encode(chunk) for chunk in batch])
            yield data + sse.DONE if batch.last else data
    except GatewayError as err:
        yield sse.encode(errors.to_openai(err))
        return
    except Exception:
        # Headers are gone; the stream's own 500 is one final error event.
        log.exception("internal error in a stream")
        internal = GatewayError("internal server error; see the gateway log")
        yield sse.encode(errors.to_openai(internal))
        return
    finally:
        # paced() closes `chunks` from its reader; closing here would race it.
        close = getattr(batches, "close", None)
        if close is not None:
            close()
