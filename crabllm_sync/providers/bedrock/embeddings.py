"""OpenAI embeddings <-> Titan / Cohere InvokeModel calls (pure)."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

from crabllm_sync.errors import invalid_param
from crabllm_sync.providers.bedrock.messages import _refuse

# Embedding models served through InvokeModel, by modelId substring.
TITAN_EMBED = "amazon.titan-embed-text"

COHERE_EMBED = "cohere.embed"

TITAN_V2_DIMENSIONS = (256, 512, 1024)

COHERE_BATCH = 96  # texts per Cohere InvokeModel call

COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")

TOKEN_COUNT_HEADER = "x-amzn-bedrock-input-token-count"


def _embedding_inputs(body: dict[str, Any]) -> list[str]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs):
        return list(inputs)
    raise _refuse("input", "token arrays; send text")


def translate_embedding_request(body: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI embeddings body -> the InvokeModel calls that answer it."""
    model = str(body["model"])
    for key, value in body.items():
        if key in ("model", "input", "encoding_format", "dimensions", "input_type"):
            continue
        if value is not None:
            raise _refuse(key)
    texts = _embedding_inputs(body)
    dims = body.get("dimensions")

    def call(payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "modelId": model,
            "body": json.dumps(payload).encode(),
            "contentType": "application/json",
            "accept": "application/json",
        }

    if TITAN_EMBED in model:
        if body.get("input_type") is not None:
            raise _refuse("input_type", "Titan has no input types")
        extra: dict[str, Any] = {}
        if dims is not None:
            if "v2" not in model or dims not in TITAN_V2_DIMENSIONS:
                raise _refuse("dimensions", "Titan v2 takes 256, 512 or 1024")
            extra["dimensions"] = dims
        # Titan embeds one text per call.
        return [call({"inputText": t, **extra}) for t in texts]
    if COHERE_EMBED in model:
        if dims is not None:
            raise _refuse("dimensions", f"model {model!r}")
        kind = body.get("input_type") or "search_document"
        if kind not in COHERE_INPUT_TYPES:
            raise invalid_param("input_type", f"one of {', '.join(COHERE_INPUT_TYPES)}")
        return [
            call({"texts": texts[i : i + COHERE_BATCH], "input_type": kind})
            for i in range(0, len(texts), COHERE_BATCH)
        ]
    raise _refuse(
        "model", f"embeddings from {model!r} (Titan and Cohere embed models are served)"
    )


def _encode_vector(vector: list[float], encoding: str | None) -> Any:
    if encoding == "base64":
        # OpenAI's base64 form: little-endian float32.
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def translate_embedding_response(
    answers: list[tuple[dict[str, Any], int | None]], body: dict[str, Any]
) -> dict[str, Any]:
    """(InvokeModel JSON, token-count header) per call -> OpenAI embeddings."""
    vectors: list[list[float]] = []
    tokens = 0
    for answer, header_tokens in answers:
        if "embedding" in answer:  # Titan
            vectors.append(answer["embedding"])
            tokens += int(answer.get("inputTextTokenCount") or header_tokens or 0)
        else:  # Cohere: a list, or by type when embedding_types was asked
            found = answer.get("embeddings")
            if isinstance(found, dict):
                found = found.get("float") or []
            vectors.extend(found or [])
            tokens += int(header_tokens or 0)
    encoding = body.get("encoding_format")
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_vector(v, encoding),
            }
            for i, v in enumerate(vectors)
        ],
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
