"""OpenAI-format endpoints: chat, embeddings, models."""

from __future__ import annotations

from flask import Blueprint, Response, request

from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response, openai_events, read_json, sse_response
from crabllm_sync.wire.openai import ChatRequest, EmbeddingRequest, validate


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("openai", __name__)

    @bp.post("/v1/chat/completions")
    def chat_completions() -> Response:
        ctx = gw.begin("chat", request.headers)
        body = read_json(request)
        validate(ChatRequest, body)
        ctx.no_cache = "no-cache" in request.headers.get("Cache-Control", "")
        if body.get("stream"):
            chunks = gw.chat_stream(ctx, body)
            keepalive = gw.config.routing.keepalive_seconds
            return sse_response(openai_events(chunks, keepalive=keepalive), ctx.headers)
        return json_response(gw.chat(ctx, body), headers=_headers(ctx))

    @bp.post("/v1/embeddings")
    def embeddings() -> Response:
        ctx = gw.begin("embeddings", request.headers)
        body = read_json(request)
        validate(EmbeddingRequest, body)
        ctx.no_cache = "no-cache" in request.headers.get("Cache-Control", "")
        return json_response(gw.embeddings(ctx, body), headers=_headers(ctx))

    @bp.get("/v1/models")
    def models() -> Response:
        ctx = gw.begin("models", request.headers)
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "crabllm"}
            for name in gw.list_models(ctx.principal)
        ]
        return json_response({"object": "list", "data": data})

    @bp.get("/v1/models/<path:name>")
    def model(name: str) -> Response:
        ctx = gw.begin("models", request.headers)
        if name not in gw.list_models(ctx.principal):
            from crabllm_sync.errors import ModelNotFoundError

            raise ModelNotFoundError(
                f"The model '{name}' does not exist", param="model"
            )
        return json_response(
            {"id": name, "object": "model", "created": 0, "owned_by": "crabllm"}
        )

    return bp


def _headers(ctx) -> dict[str, str]:  # noqa: ANN001 - RequestContext
    headers = dict(ctx.headers)
    if ctx.cache_hit:
        headers["x-crabllm-cache"] = "hit"
    return headers
