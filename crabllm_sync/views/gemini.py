"""Google's Gemini API on /v1beta: generateContent, streamGenerateContent
(`alt=sse`, else one JSON array), countTokens, embedContent,
batchEmbedContents and the model list.

Models whose deployments take the Gemini API natively (kind `google`) pass
through; every other model goes through the canonical chat format
(formats/gemini). The key comes as `x-goog-api-key` or `?key=` (as Google's
SDKs send it); errors render in Google's shape.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from crabllm_sync.errors import InvalidRequestError, ModelNotFoundError
from crabllm_sync.formats import chat as chat_format
from crabllm_sync.formats import gemini as fmt
from crabllm_sync.formats.gemini import extras
from crabllm_sync.gateway import Gateway
from crabllm_sync.views.body import read_json
from crabllm_sync.views.responses import (
    answer_headers,
    json_response,
    register_error_handlers,
    sse_response,
)
from crabllm_sync.views.streaming import Encoder, stream_body

PREFIX = "/v1beta"


def credentials() -> dict[str, str]:
    """The request's headers, with Google's key (header or `?key=`) as the bearer."""
    key = request.headers.get("x-goog-api-key") or request.args.get("key")
    headers = dict(request.headers)
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return headers


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("gemini", __name__)

    for method, handler in _METHODS.items():
        bp.add_url_rule(
            f"{PREFIX}/models/<path:model>:{method}",
            method,
            _bind(gw, handler),
            methods=["POST"],
        )

    @bp.get(f"{PREFIX}/models")
    def models() -> Response:
        ctx = gw.begin("models", credentials())
        names = gw.list_models(ctx.principal)
        return json_response({"models": [extras.model_entry(n) for n in names]})

    @bp.get(f"{PREFIX}/models/<path:name>")
    def model(name: str) -> Response:
        ctx = gw.begin("models", credentials())
        if name not in gw.list_models(ctx.principal):
            raise ModelNotFoundError(f"models/{name} is not found", param="model")
        return json_response(extras.model_entry(name))

    register_error_handlers(bp, fmt.to_google, lambda: fmt.to_google)
    return bp


def _bind(gw: Gateway, handler: Any) -> Any:
    def view(model: str) -> Response:
        return handler(gw, model)

    return view


def _body(gw: Gateway, endpoint: str) -> tuple[Any, dict[str, Any]]:
    """authenticate -> read: the context and the body (a JSON object)."""
    ctx = gw.begin(endpoint, credentials())
    body = read_json(request)
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    ctx.no_cache = "no-cache" in request.headers.get("Cache-Control", "")
    return ctx, body


def _generate(gw: Gateway, model: str, *, stream: bool = False) -> Response:
    ctx, body = _body(gw, "gemini")
    if not isinstance(body.get("contents"), list):
        raise InvalidRequestError("'contents': is required", param="contents")
    sse = request.args.get("alt") == "sse"
    if gw.serves_natively(model, fmt.FORMAT):
        outline = extras.outline(body, model)
        native = {**body, "model": model}
        if stream:
            observer = fmt.NativeObserver(ctx, gw.redact)
            events = gw.stream(
                ctx, "generate_content_stream", outline, native, observer
            )
            return _stream(gw, ctx, events, fmt.NativeEncoder(sse), sse)
        answer = gw.unary(
            ctx, "generate_content", outline, payload=native, usage_of=fmt.native_usage
        )
        return json_response(answer, headers=ctx.headers)
    chat = fmt.to_canonical(body, model, stream=stream)
    if stream:
        chat["stream_options"] = {"include_usage": True}  # the last event's usage
        payload, _ = chat_format.stream_request(chat)
        observer = chat_format.ChatObserver(ctx, wants_usage=True)
        chunks = gw.stream(ctx, "chat_stream", chat, payload, observer)
        return _stream(gw, ctx, chunks, fmt.TranslatedEncoder(model, sse), sse)
    answer = gw.chat(ctx, chat, render=lambda r: fmt.from_canonical(r, model))
    return json_response(answer, headers=answer_headers(ctx))


def _stream(gw: Gateway, ctx: Any, items: Any, encoder: Encoder, sse: bool) -> Response:
    """SSE (`alt=sse`) or one JSON array, with no keep-alives either way:
    Google's SDKs read every line that is not `data:` as JSON (a comment is
    a parse error) and a comment would break the array."""
    body = stream_body(items, encoder)
    if sse:
        return sse_response(body, ctx.headers)
    return Response(
        body,
        mimetype="application/json",
        headers={"X-Accel-Buffering": "no", **ctx.headers},
        direct_passthrough=True,
    )


def _count_tokens(gw: Gateway, model: str) -> Response:
    ctx, body = _body(gw, "count_tokens")
    body = {**body, "model": model}
    estimate = extras.estimate_count(body)
    # Google's own count on google deployments (the adapter's count_gemini_tokens).
    counted = gw.count(ctx, body, fmt.FORMAT, "count_gemini_tokens", estimate)
    return json_response(counted)


def _embed(gw: Gateway, model: str) -> Response:
    ctx, body = _body(gw, "embeddings")
    chat = extras.embeddings_request([body], model, "content")
    answer = gw.embeddings(ctx, chat)
    (embedding,) = extras.embeddings_answer(answer)
    return json_response({"embedding": embedding}, headers=answer_headers(ctx))


def _batch_embed(gw: Gateway, model: str) -> Response:
    ctx, body = _body(gw, "embeddings")
    requests = body.get("requests")
    if not isinstance(requests, list):
        raise InvalidRequestError("'requests': is required", param="requests")
    chat = extras.embeddings_request(requests, model, "requests")
    answer = gw.embeddings(ctx, chat)
    embeddings = extras.embeddings_answer(answer)
    return json_response({"embeddings": embeddings}, headers=answer_headers(ctx))


_METHODS = {
    "generateContent": _generate,
    "streamGenerateContent": lambda gw, model: _generate(gw, model, stream=True),
    "countTokens": _count_tokens,
    "embedContent": _embed,
    "batchEmbedContents": _batch_embed,
}
