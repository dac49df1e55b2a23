"""Gemini's other methods: countTokens (estimated off-Google), embedContent
and batchEmbedContents (through canonical embeddings), and model entries. Pure.
"""

from __future__ import annotations

from typing import Any

import orjson

from crabllm_sync import pricing
from crabllm_sync.formats.gemini.request import invalid, refuse

METHODS = [
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
]


def estimate_count(body: dict[str, Any]) -> dict[str, Any]:
    """countTokens answered from the request's length (the gateway's usual
    estimate of about 4 characters a token), for providers with no counter."""
    request = body.get("generateContentRequest") or body
    counted = {
        k: request.get(k)
        for k in ("contents", "systemInstruction", "tools")
        if request.get(k)
    }
    text = _texts(counted)
    return {"totalTokens": pricing.estimate_tokens(sum(map(len, text)))}


def _texts(value: Any) -> list[str]:
    """Every text a model reads in a request: text parts, function calls and
    responses (as JSON), declarations (as JSON); not inline binary data."""
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    for key, item in value.items():
        if key == "text" and isinstance(item, str):
            out.append(item)
        elif key in ("functionCall", "functionResponse", "functionDeclarations"):
            out.append(orjson.dumps(item).decode())
        elif key != "inlineData":
            out += _texts(item)
    return out


def _text_of(content: Any, where: str) -> str:
    if not isinstance(content, dict):
        raise invalid(where, "must be a Content object with text parts")
    texts = []
    for j, part in enumerate(content.get("parts") or []):
        if "text" not in part:
            raise refuse(f"{where}.parts[{j}]", "only text can be embedded")
        texts.append(part["text"])
    return "".join(texts)


def embeddings_request(
    requests: list[dict[str, Any]], model: str, where: str
) -> dict[str, Any]:
    """embedContent request(s) -> one OpenAI embeddings request."""
    if not requests:
        raise invalid(where, "is required")
    inputs = [
        _text_of(r.get("content"), f"{where}[{i}].content")
        for i, r in enumerate(requests)
    ]
    # taskType and title tune Google's own embedding models: no equivalent.
    dims = {
        r.get("outputDimensionality")
        or (r.get("embedContentConfig") or {}).get("outputDimensionality")
        for r in requests
    }
    body: dict[str, Any] = {"model": model, "input": inputs}
    if len(dims) > 1:
        raise invalid(where, "every request must ask the same outputDimensionality")
    (dim,) = dims
    if dim is not None:
        body["dimensions"] = dim
    return body


def embeddings_answer(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI embeddings answer -> Gemini ContentEmbedding objects, in order."""
    data = sorted(answer.get("data") or [], key=lambda d: d.get("index", 0))
    return [{"values": d.get("embedding") or []} for d in data]


def model_entry(name: str) -> dict[str, Any]:
    """A model as Gemini's models.list describes it."""
    return {
        "name": f"models/{name}",
        "baseModelId": name,
        "version": "crabllm",
        "displayName": name,
        "supportedGenerationMethods": METHODS,
    }


def outline(body: dict[str, Any], model: str) -> dict[str, Any]:
    """A native request's canonical outline, for limits and the budget's
    reservation (prompt length, output cap, answers): nothing is translated."""
    cfg = (
        body.get("generationConfig")
        if isinstance(body.get("generationConfig"), dict)
        else {}
    )
    request = {k: body.get(k) for k in ("contents", "systemInstruction", "tools")}
    out: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "".join(_texts(request))}],
    }
    for ours, theirs in (("max_tokens", "maxOutputTokens"), ("n", "candidateCount")):
        if cfg.get(theirs) is not None:
            out[ours] = cfg[theirs]
    return out
