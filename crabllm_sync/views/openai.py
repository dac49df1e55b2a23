"""OpenAI-format endpoints: chat, embeddings, models, images, audio."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Request, Response, request

from crabllm_sync.errors import InvalidRequestError
from crabllm_sync.gateway import Gateway
from crabllm_sync.multipart import Upload
from crabllm_sync.views import (
    json_response,
    openai_events,
    read_json,
    refuse_truncated,
    sse_response,
)
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

    @bp.post("/v1/images/generations")
    def images() -> Response:
        ctx = gw.begin("images", request.headers)
        body = read_json(request)
        if isinstance(body, dict):
            body.setdefault("model", "dall-e-2")  # OpenAI's own default
        validate(ImageRequest, body)
        return json_response(gw.images(ctx, body), headers=_headers(ctx))

    @bp.post("/v1/audio/speech")
    def speech() -> Response:
        ctx = gw.begin("speech", request.headers)
        body = read_json(request)
        validate(SpeechRequest, body)
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
        return Response(content, content_type=content_type, headers=_headers(ctx))

    return bp


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


def _headers(ctx) -> dict[str, str]:  # noqa: ANN001 - RequestContext
    headers = dict(ctx.headers)
    if ctx.cache_hit:
        headers["x-crabllm-cache"] = "hit"
    return headers
