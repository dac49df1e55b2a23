"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's format in and out.

Models whose deployments take the messages format natively (their adapter
declares it) pass through; every other model goes through the canonical chat
format (formats/messages.py) and the gateway's chat pipeline, cache included.
Errors raised here render in Anthropic's shape; x-api-key is accepted.
Streams are paced like OpenAI ones (views/streaming.py).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from crabllm_sync import errors
from crabllm_sync.context import RequestContext
from crabllm_sync.formats import messages as fmt
from crabllm_sync.gateway import Gateway
from crabllm_sync.providers.anthropic import PASSTHROUGH_HEADERS
from crabllm_sync.views.body import parse
from crabllm_sync.views.responses import (
    answer_headers,
    json_response,
    register_error_handlers,
)
from crabllm_sync.views.streaming import sse_stream
from crabllm_sync.wire import anthropic as wire
from crabllm_sync.wire.openai import validate


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("anthropic", __name__)

    @bp.post("/v1/messages")
    def messages() -> Response:
        # Passed through, a request is checked only where the gateway reads it:
        # the provider judges the rest (its betas included).
        ctx, body = parse(gw, "messages", wire.NativeRequest, allow_x_api_key=True)
        if gw.serves_natively(body["model"], fmt.FORMAT):
            return _native(gw, ctx, body, _client_headers())
        validate(wire.MessagesRequest, body)
        return _translated(gw, ctx, body)

    @bp.post("/v1/messages/count_tokens")
    def count_tokens() -> Response:
        ctx, body = parse(
            gw, "count_tokens", wire.CountTokensRequest, allow_x_api_key=True
        )
        return json_response(gw.count_tokens(ctx, body, _client_headers()))

    register_error_handlers(bp, errors.to_anthropic, lambda: errors.to_anthropic)
    return bp


def _native(
    gw: Gateway, ctx: RequestContext, body: dict[str, Any], headers: dict[str, str]
) -> Response:
    """Anthropic in, Anthropic out: the body and the answer pass through."""
    if body.get("stream"):
        events = gw.messages_native_stream(ctx, body, headers)
        return sse_stream(gw, ctx, events, fmt.NativeEncoder())
    return json_response(gw.messages_native(ctx, body, headers), headers=ctx.headers)


def _translated(gw: Gateway, ctx: RequestContext, body: dict[str, Any]) -> Response:
    """Through the canonical format and the chat pipeline (cache included)."""
    chat = fmt.to_canonical(body)
    if body.get("stream"):
        chunks = gw.chat_stream(ctx, chat)
        return sse_stream(gw, ctx, chunks, fmt.TranslatedEncoder(body["model"]))
    model = body["model"]
    message = gw.chat(ctx, chat, render=lambda r: fmt.from_canonical(r, model))
    return json_response(message, headers=answer_headers(ctx))


def _client_headers() -> dict[str, str]:
    """The client headers forwarded on native calls (anthropic-beta)."""
    return {h: request.headers[h] for h in PASSTHROUGH_HEADERS if h in request.headers}
