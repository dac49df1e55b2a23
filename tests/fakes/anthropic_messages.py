"""A minimal Anthropic Messages API: /v1/messages (plain and SSE), count_tokens.

Shapes follow Anthropic's documented examples (streaming: message_start, ping,
content_block_*, message_delta with cumulative usage, message_stop).
"""

from __future__ import annotations

from typing import Any

from tests.upstream import Recorded, Reply, Upstream

MESSAGES_PATH = r"/v1/messages$"
COUNT_PATH = r"/v1/messages/count_tokens$"

USAGE = {
    "input_tokens": 12,
    "output_tokens": 6,
    "cache_creation_input_tokens": 3,
    "cache_read_input_tokens": 20,
}


def answer_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    if isinstance(content, list):
        content = " ".join(b.get("text", "") for b in content if b["type"] == "text")
    return f"echo: {content}"


def message(model: str, text: str, usage: dict[str, Any] | None = None) -> dict:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": dict(usage or USAGE),
    }


def stream_events(model: str, pieces: list[str]) -> list[Any]:
    """The documented event sequence for a text answer, as (name, payload)."""
    start = message(model, "")
    start["content"] = []
    start["stop_reason"] = None
    start["usage"] = {**USAGE, "output_tokens": 1}
    events: list[Any] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for p in pieces:
        events.append(
            (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": p},
                },
            )
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def _auth_error() -> Reply:
    return Reply(
        status=401,
        json={
            "type": "error",
            "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        },
    )


def _authorized(rec: Recorded) -> bool:
    # The API takes x-api-key; recent SDKs send the key as a Bearer token.
    has_key = rec.headers.get("x-api-key") or rec.headers.get(
        "authorization", ""
    ).startswith("Bearer ")
    return bool(has_key and rec.headers.get("anthropic-version"))


def messages_handler(rec: Recorded) -> Reply:
    if not _authorized(rec):
        return _auth_error()
    body = rec.json
    text = answer_text(body)
    if body.get("stream"):
        pieces = [w + " " for w in text.split(" ")]
        pieces[-1] = pieces[-1].rstrip()
        return Reply(events=stream_events(body["model"], pieces))
    return Reply(json=message(body["model"], text))


def count_handler(rec: Recorded) -> Reply:
    if not _authorized(rec):
        return _auth_error()
    words = sum(len(str(m["content"]).split()) for m in rec.json["messages"])
    return Reply(json={"input_tokens": 10 + words})


def make_upstream() -> Upstream:
    return Upstream({MESSAGES_PATH: messages_handler, COUNT_PATH: count_handler})
