"""The offline `mock` provider: deterministic replies, streams and embeddings.

No network. It echoes the last user message so a first request proves the
whole path, and counts tokens as whitespace-separated words.
"""

from __future__ import annotations

import hashlib
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

from crabllm_sync.routing import Deployment
from crabllm_sync.wire import completions as oai

BASE_URL = None
EMBEDDING_DIMENSIONS = 16


def reply_text(body: dict[str, Any]) -> str:
    """What the mock model answers: an echo of the last user message."""
    for msg in reversed(body.get("messages") or []):
        if msg.get("role") == "user":
            text = _text(msg.get("content"))
            return f"Mock reply: {text}" if text else "Mock reply."
    return "Mock reply."


def count_tokens(text: str) -> int:
    return len(text.split())


def prompt_tokens(body: dict[str, Any]) -> int:
    msgs = body.get("messages") or []
    return sum(count_tokens(_text(m.get("content"))) + 3 for m in msgs)


def chat(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    words, finish = _words(body)
    text = " ".join(words)
    message = {"role": "assistant", "content": text}
    return oai.completion(
        _id(body),
        dep.model,
        int(time.time()),
        [oai.choice(message, finish)],
        _usage(body, len(words)),
    )


def chat_stream(
    dep: Deployment, session: Any, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    words, finish = _words(body)
    id_, created = _id(body), int(time.time())

    def chunk(
        delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        return oai.chunk(id_, dep.model, created, delta, finish_reason)

    yield chunk({"role": "assistant", "content": ""})
    for i, word in enumerate(words):
        yield chunk({"content": word if i == 0 else " " + word})
    yield chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        yield oai.usage_chunk(id_, dep.model, created, _usage(body, len(words)))


def embeddings(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    inputs = body.get("input")
    if isinstance(inputs, str) or (inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    dims = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(str(item), dims)}
        for i, item in enumerate(inputs or [])
    ]
    tokens = sum(
        count_tokens(x) if isinstance(x, str) else len(x) for x in inputs or []
    )
    return {
        "object": "list",
        "data": data,
        "model": dep.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _words(body: dict[str, Any]) -> tuple[list[str], str]:
    words = reply_text(body).split()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and 0 < limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def _usage(body: dict[str, Any], completion: int) -> dict[str, Any]:
    return oai.usage(prompt_tokens(body), completion)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            p.get("text", "")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _id(body: dict[str, Any]) -> str:
    digest = hashlib.sha256(reply_text(body).encode()).hexdigest()[:24]
    return f"chatcmpl-mock{digest}"


def _vector(text: str, dims: int) -> list[float]:
    raw = b""
    counter = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [v / 2**31 for v in struct.unpack(f"<{dims}i", raw[: dims * 4])]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]
