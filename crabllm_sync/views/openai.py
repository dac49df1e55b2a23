"""OpenAI-format endpoints: chat, embeddings, models, images, audio."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from crabllm_sync.errors import ModelNotFoundError
from crabllm_sync.formats.chat import ChatEncoder
from crabllm_sync.gateway import Gateway
from crabllm_sync.views.body import parse, read_upload
from crabllm_sync.views.responses import answer_headers, json_response
from crabllm_sync.views.streaming import sse_stream
from crabllm_sync.wire.openai import (
    ChatRequest,
    EmbeddingRequest,
    ImageRequest,
    SpeechRequest,
    TranscriptionRequest,
    validate,
)


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("openai", __name__)

    @bp.post("/v1/chat/completions")
    def chat_completions() -> Response:
        ctx, body = parse(gw, "chat", ChatRequest)
        if body.get("stream"):
            return sse_stream(gw, ctx, gw.chat_stream(ctx, body), ChatEncoder())
        return json_response(gw.chat(ctx, body), headers=answer_headers(ctx))

    @bp.post("/v1/embeddings")
    def embeddings() -> Response:
        ctx, body = parse(gw, "embeddings", EmbeddingRequest)
        return json_response(gw.embeddings(ctx, body), headers=answer_headers(ctx))

    @bp.get("/v1/models")
    def models() -> Response:
        ctx = gw.begin("models", request.headers)
        data = [_model(name) for name in gw.list_models(ctx.principal)]
        return json_response({"object": "list", "data": data})

    @bp.get("/v1/models/<path:name>")
    def model(name: str) -> Response:
        ctx = gw.begin("models", request.headers)
        if name not in gw.list_models(ctx.principal):
            raise ModelNotFoundError(
                f"The model '{name}' does not exist", param="model"
            )
        return json_response(_model(name))

    @bp.post("/v1/images/generations")
    def images() -> Response:
        # dall-e-2 is OpenAI's own default model.
        ctx, body = parse(gw, "images", ImageRequest, default_model="dall-e-2")
        return json_response(gw.images(ctx, body), headers=answer_headers(ctx))

    @bp.post("/v1/audio/speech")
    def speech() -> Response:
        ctx, body = parse(gw, "speech", SpeechRequest)
        content_type, chunks = gw.speech(ctx, body)
        return Response(
            chunks,
            content_type=content_type,
            headers={**ctx.headers, "X-Accel-Buffering": "no"},
            direct_passthrough=True,
        )

    @bp.post("/v1/audio/transcriptions")
    def transcriptions() -> Response:
        return _audio_upload("transcription")

    @bp.post("/v1/audio/translations")
    def translations() -> Response:
        return _audio_upload("translation")

    def _audio_upload(endpoint: str) -> Response:
        ctx = gw.begin(endpoint, request.headers)
        fields, upload = read_upload(request)
        validate(TranscriptionRequest, fields)
        content_type, content = gw.transcription(ctx, endpoint, fields, upload)
        return Response(content, content_type=content_type, headers=answer_headers(ctx))

    return bp


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "crabllm"}
