"""OpenAI embeddings <-> Gemini batchEmbedContents (pure)."""

from __future__ import annotations

import base64
import struct
from typing import Any

from crabllm_sync.providers.google.messages import _refuse
from crabllm_sync.providers.google.request import _model_path


def translate_embeddings_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI embeddings request -> a Gemini batchEmbedContents body."""
    for key, value in body.items():
        if value is not None and key not in (
            "model",
            "input",
            "dimensions",
            "encoding_format",
            "user",
        ):
            raise _refuse(key)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs or not all(isinstance(x, str) for x in inputs):
        raise _refuse("input", "token arrays cannot be embedded; send text")
    path = _model_path(model)
    requests_ = []
    for text in inputs:
        req: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
        if body.get("dimensions") is not None:
            req["outputDimensionality"] = body["dimensions"]
        requests_.append(req)
    return {"requests": requests_}


def translate_embeddings_response(
    native: dict[str, Any], *, model: str, encoding_format: str | None = None
) -> dict[str, Any]:
    """batchEmbedContents answer -> OpenAI embeddings list (Gemini counts no tokens)."""
    data = []
    for i, emb in enumerate(native.get("embeddings") or []):
        values = emb.get("values") or []
        vector: Any = values
        if encoding_format == "base64":
            packed = struct.pack(f"<{len(values)}f", *values)
            vector = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
