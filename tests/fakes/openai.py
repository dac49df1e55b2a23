"""OpenAI's wire format: chat (plain and SSE), embeddings; also Azure's paths."""

from __future__ import annotations

from typing import Any

from tests.upstream import Recorded, Reply, Upstream

CHAT_PATH = r"/chat/completions$"
EMBED_PATH = r"/embeddings$"


def answer_text(body: dict[str, Any]) -> str:
    last = body["messages"][-1].get("content")
    text = last if isinstance(last, str) else "parts"
    return f"echo: {text}"


def completion(
    model: str,
    text: str,
    *,
    prompt_tokens: int = 7,
    completion_tokens: int = 3,
    finish_reason: str = "stop",
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-up1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def stream_events(
    model: str, pieces: list[str], *, usage: bool = True, prompt_tokens: int = 7
) -> list[Any]:
    """OpenAI chunk events for `pieces`, a finish chunk, a usage chunk, [DONE]."""
    base = {
        "id": "chatcmpl-up1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "system_fingerprint": "fp_test",
    }
    events: list[Any] = [
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": ""},
                    "logprobs": None,
                    "finish_reason": None,
                }
            ],
        }
    ]
    for p in pieces:
        events.append(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": p},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        )
    events.append(
        {
            **base,
            "choices": [
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
            ],
        }
    )
    if usage:
        events.append(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": len(pieces),
                    "total_tokens": prompt_tokens + len(pieces),
                },
            }
        )
    events.append("[DONE]")
    return events


def chat_handler(rec: Recorded) -> Reply:
    body = rec.json
    text = answer_text(body)
    if body.get("stream"):
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return Reply(
            events=stream_events(
                body.get("model", "?"), text.split(" "), usage=wants_usage
            )
        )
    return Reply(json=completion(body.get("model", "?"), text))


def embeddings_handler(rec: Recorded) -> Reply:
    body = rec.json
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    return Reply(
        json={
            "object": "list",
            "data": [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": [0.1 * (i + 1), 0.2, 0.3],
                }
                for i in range(len(inputs))
            ],
            "model": body.get("model"),
            "usage": {
                "prompt_tokens": 4 * len(inputs),
                "total_tokens": 4 * len(inputs),
            },
        }
    )


def make_upstream() -> Upstream:
    from tests.fakes.openai_responses import RESPONSES_PATH, ResponsesApi

    up = Upstream({CHAT_PATH: chat_handler, EMBED_PATH: embeddings_handler})
    up.route(RESPONSES_PATH, ResponsesApi())
    return up
