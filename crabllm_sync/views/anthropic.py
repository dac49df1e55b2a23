"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's format in and out.

anthropic-kind models pass through natively; every other model goes through
OpenAI's format (wire/anthropic/) and the gateway's chat pipeline.
Errors raised here render in Anthropic's shape; x-api-key is accepted.
Streams are paced like OpenAI ones (streams.paced): an SSE comment line every
[routing] keepalive_seconds without an event, and a client that leaves closes
the upstream at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, request
from werkzeug.exceptions import HTTPException

from crabllm_sync import errors, sse, streams
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError
from crabllm_sync.gateway import Gateway
from crabllm_sync.providers.anthropic import PASSTHROUGH_HEADERS
from crabllm_sync.views import error_response, json_response, read_json, sse_response
from crabllm_sync.wire import anthropic as wire
from crabllm_sync.wire.openai import validate

log = logging.getLogger(__name__)

NATIVE_KIND = "anthropic"


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("anthropic", __name__)

    @bp.post("/v1/messages")
    def messages() -> Response:
        ctx = gw.begin("messages", request.headers, allow_x_api_key=True)
        body = read_json(request)
        validate(wire.MessagesRequest, body)
        ctx.no_cache = "no-cache" in request.headers.get("Cache-Control", "")
        if gw.serves_natively(body["model"], NATIVE_KIND):
            return _native(gw, ctx, body, _client_headers())
        return _translated(gw, ctx, body)

    @bp.post("/v1/messages/count_tokens")
    def count_tokens() -> Response:
        ctx = gw.begin("count_tokens", request.headers, allow_x_api_key=True)
        body = read_json(request)
        validate(wire.CountTokensRequest, body)
        return json_response(gw.count_tokens(ctx, body, _client_headers()))

    @bp.errorhandler(GatewayError)
    def gateway_error(err: GatewayError) -> Response:
        return error_response(err, errors.to_anthropic)

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        err = errors.from_http_status(exc.code or 500, exc.description or exc.name)
        return error_response(err, errors.to_anthropic)

    @bp.errorhandler(Exception)
    def internal_error(exc: Exception) -> Response:
        log.exception("internal error")
        err = GatewayError("internal server error; see the gateway log")
        return error_response(err, errors.to_anthropic)

    return bp


def _native(
    gw: Gateway, ctx: RequestContext, body: dict[str, Any], headers: dict[str, str]
) -> Response:
    """Anthropic in, Anthropic out: the body and the answer pass through."""
    if body.get("stream"):
        events = gw.messages_native_stream(ctx, body, headers)
        keepalive = gw.config.routing.keepalive_seconds
        return sse_response(_native_events(events, keepalive), ctx.headers)
    return json_response(gw.messages_native(ctx, body, headers), headers=ctx.headers)


def _translated(gw: Gateway, ctx: RequestContext, body: dict[str, Any]) -> Response:
    """Through OpenAI's format and the chat pipeline (cache included)."""
    chat = wire.to_chat(body)
    if body.get("stream"):
        chunks = gw.chat_stream(ctx, chat)
        keepalive = gw.config.routing.keepalive_seconds
        events = _translated_events(chunks, body["model"], keepalive)
        return sse_response(events, ctx.headers)
    message = wire.from_chat(gw.chat(ctx, chat), body["model"])
    headers = dict(ctx.headers)
    if ctx.cache_hit:
        headers["x-crabllm-cache"] = "hit"
    return json_response(message, headers=headers)


def _client_headers() -> dict[str, str]:
    """The client headers forwarded on native calls (anthropic-beta)."""
    return {h: request.headers[h] for h in PASSTHROUGH_HEADERS if h in request.headers}


# Keep-alive: an SSE comment line, not Anthropic's `event: ping`. Comments are
# ignored by every SSE parser, at any point of the stream; a ping before
# message_start (a pause before the first translated chunk) is an event order
# Anthropic never sends, and some clients refuse it. The upstream's own pings
# still pass through on the native path.


def _native_events(
    events: Iterator[sse.Event], keepalive: float | None = None
) -> Iterator[bytes]:
    """Native events re-framed as they came (those ready together in one
    write); a later failure is one error event."""
    batches = streams.paced(events, keepalive)
    try:
        for batch in batches:
            if batch.is_pause:
                yield sse.KEEPALIVE
                continue
            if batch:
                yield b"".join([_frame(event) for event in batch])
    except GatewayError as err:
        yield sse.encode_event("error", errors.to_anthropic(err))
    finally:
        _close(batches)


def _frame(event: sse.Event) -> bytes:
    name = f"event: {event.event}\n" if event.event else ""
    data = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    return f"{name}{data}\n".encode()


def _translated_events(
    chunks: Iterator[dict[str, Any]], model: str, keepalive: float | None = None
) -> Iterator[bytes]:
    """OpenAI chunks -> Anthropic events (those ready together in one write);
    a later failure is one error event."""
    translator = wire.EventTranslator(model)
    batches = streams.paced(chunks, keepalive)
    try:
        for batch in batches:
            if batch.is_pause:
                yield sse.KEEPALIVE
                continue
            events = [e for chunk in batch for e in translator.feed(chunk)]
            if batch.last:
                events += translator.finish()
            if events:
                yield b"".join([sse.encode_event(n, p) for n, p in events])
    except GatewayError as err:
        yield sse.encode_event("error", errors.to_anthropic(err))
    finally:
        _close(batches)


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
