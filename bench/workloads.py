"""The request bodies each benchmark workload sends, built once, as bytes.

Pure data: the load generator and the runner share these so a direct call and a
call through the gateway send exactly the same bytes (only the path's host differs).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

CHAT_MODEL = "bench-model"
SLOW_MODEL = "bench-slow"  # the mock waits between stream chunks for this model
EMBED_MODEL = "bench-embed"
# Served by a provider kind that speaks chat completions only, so /v1/responses
# is bridged: the codec's cost, request and stream events, is what it measures.
RESPONSES_MODEL = "bench-responses"


@dataclass(frozen=True)
class Workload:
    name: str
    path: str
    body: bytes
    stream: bool = False
    # Only the gateway serves it (the mock and the bare proxy speak chat only).
    gateway_only: bool = False


def _chat(messages: list[dict], **extra: object) -> bytes:
    return orjson.dumps({"model": CHAT_MODEL, "messages": messages, **extra})


def _large_context() -> list[dict]:
    """50 messages alternating user and assistant, a few hundred bytes each."""
    words = "the quick brown fox jumps over the lazy dog " * 6
    msgs: list[dict] = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(49):
        role = "user" if i % 2 == 0 else "assistant"
        msgs.append({"role": role, "content": f"turn {i}: {words}"})
    return msgs


def _tools() -> list[dict]:
    """10 function definitions with small JSON-schema parameters."""
    return [
        {
            "type": "function",
            "function": {
                "name": f"tool_{i}",
                "description": f"Look up fact number {i} about a city.",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "description": "City name"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                        "days": {"type": "integer", "minimum": 1, "maximum": 14},
                    },
                    "required": ["city"],
                },
            },
        }
        for i in range(10)
    ]


_HI = [{"role": "user", "content": "Say hi"}]

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("chat-minimal", "/v1/chat/completions", _chat(_HI)),
        Workload("chat-stream", "/v1/chat/completions", _chat(_HI, stream=True), True),
        Workload(
            "embeddings",
            "/v1/embeddings",
            orjson.dumps(
                {
                    "model": EMBED_MODEL,
                    "input": "The food was delicious and the waiter was kind.",
                    "encoding_format": "float",
                }
            ),
        ),
        Workload("large-context", "/v1/chat/completions", _chat(_large_context())),
        Workload(
            "tools",
            "/v1/chat/completions",
            _chat(_HI, tools=_tools(), tool_choice="auto"),
        ),
        Workload(
            "responses-stream",
            "/v1/responses",
            orjson.dumps({"model": RESPONSES_MODEL, "input": "Say hi", "stream": True}),
            True,
            gateway_only=True,
        ),
        # The same without storing the Response: what the store costs.
        Workload(
            "responses-stream-nostore",
            "/v1/responses",
            orjson.dumps(
                {
                    "model": RESPONSES_MODEL,
                    "input": "Say hi",
                    "stream": True,
                    "store": False,
                }
            ),
            True,
            gateway_only=True,
        ),
        Workload(
            "slow-stream",
            "/v1/chat/completions",
            orjson.dumps({"model": SLOW_MODEL, "messages": _HI, "stream": True}),
            True,
        ),
    )
}
