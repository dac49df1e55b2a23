"""Anthropic's Messages API wire format: JSON answers and named SSE events.

Checks what it is sent the way the API does (headers, the SDK's own request
types, alternating roles, tool_result after tool_use) and answers 400/401 in
Anthropic's error shape. Answers come from scripted `Answer`s, rendered either
as one Message or as the event stream, so both ways carry the same content.
Also serves /v1/messages/count_tokens (10 + the number of words sent).
"""

from __future__ import annotations

import functools
import json
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from anthropic._constants import ANTHROPIC_API_VERSION
from anthropic.types import message_create_params
from pydantic import TypeAdapter, ValidationError

from tests.upstream import Recorded, Reply, Upstream

MESSAGES_PATH = r"/v1/messages$"
COUNT_PATH = r"/v1/messages/count_tokens$"
# The first stable version (what the gateway sends) and the one the installed
# SDK sends; the API accepts every published version.
API_VERSIONS = frozenset({"2023-06-01", ANTHROPIC_API_VERSION})


@functools.cache
def _request_schema() -> TypeAdapter[Any]:
    # Built on first use: it takes seconds, and unit tests only need events().
    return TypeAdapter(message_create_params.MessageCreateParamsNonStreaming)


@dataclass
class Answer:
    """What the model says: native content blocks, a stop reason and usage."""

    blocks: list[dict[str, Any]]
    stop_reason: str = "end_turn"
    input_tokens: int = 25
    output_tokens: int = 15
    cache_read: int = 0
    cache_write: int = 0
    id: str = "msg_01XFDUDYJgAACzvnptvVoYEL"
    # Stream only: replace everything after this many events with an error event.
    error_after: int | None = None
    error: dict[str, Any] = field(
        default_factory=lambda: {"type": "overloaded_error", "message": "Overloaded"}
    )


def text(value: str, **kw: Any) -> Answer:
    return Answer([{"type": "text", "text": value}], **kw)


def tool_use(name: str, args: dict[str, Any], id_: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": id_, "name": name, "input": args}


def usage(answer: Answer) -> dict[str, Any]:
    return {
        "input_tokens": answer.input_tokens,
        "cache_creation_input_tokens": answer.cache_write,
        "cache_read_input_tokens": answer.cache_read,
        "output_tokens": answer.output_tokens,
    }


def message(answer: Answer, model: str) -> dict[str, Any]:
    """The non-streamed Message."""
    return {
        "id": answer.id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": answer.blocks,
        "stop_reason": answer.stop_reason,
        "stop_sequence": None,
        "usage": usage(answer),
    }


def _pieces(value: str, size: int) -> list[str]:
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def events(answer: Answer, model: str) -> list[tuple[str, dict[str, Any]]]:
    """The same answer as Messages stream events (event name, payload)."""
    start_usage = {**usage(answer), "output_tokens": 1}
    out: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **message(answer, model),
                    "content": [],
                    "stop_reason": None,
                    "usage": start_usage,
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for i, block in enumerate(answer.blocks):
        kind = block["type"]
        if kind == "text":
            first: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _words(block["text"])]
        elif kind == "tool_use":
            first = {**block, "input": {}}
            # As the API does: one empty piece first, and nothing more for {}.
            args = json.dumps(block["input"], ensure_ascii=False)
            deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                {"type": "input_json_delta", "partial_json": p}
                for p in (_pieces(args, 7) if block["input"] else [])
            ]
        elif kind == "thinking":
            first = {"type": "thinking", "thinking": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": p}
                for p in _words(block["thinking"])
            ] + [{"type": "signature_delta", "signature": block["signature"]}]
        else:  # redacted_thinking arrives whole
            first, deltas = block, []
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": i, "content_block": first},
            )
        )
        for d in deltas:
            out.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": i, "delta": d},
                )
            )
        out.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    out.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": answer.output_tokens},
            },
        )
    )
    out.append(("message_stop", {"type": "message_stop"}))
    if answer.error_after is not None:
        out = out[: answer.error_after] + [
            ("error", {"type": "error", "error": answer.error})
        ]
    return out


def _words(value: str) -> list[str]:
    words = value.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def error(status: int, kind: str, msg: str) -> Reply:
    return Reply(
        status=status,
        json={"type": "error", "error": {"type": kind, "message": msg}},
        headers={"request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"},
    )


def _drain(value: Any) -> Any:
    """Consume pydantic's lazy iterators so every nested block is validated."""
    if isinstance(value, dict):
        return {k: _drain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_drain(v) for v in value]
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if isinstance(value, Iterator) or hasattr(value, "__next__"):
        return [_drain(v) for v in value]
    return value


def check(rec: Recorded) -> str | None:
    """Why the API would refuse this request (None: it is acceptable)."""
    body = rec.json
    try:
        _drain(_request_schema().validate_python({**body, "stream": False}))
    except ValidationError as exc:
        first = exc.errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    msgs = body["messages"]
    if not msgs:
        return "messages: at least one message is required"
    if msgs[0]["role"] != "user":
        return "messages: first message must use the user role"
    prior_tool_ids: set[str] = set()
    for i, msg in enumerate(msgs):
        if msg["role"] not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i and msgs[i - 1]["role"] == msg["role"]:
            return f"messages.{i}: roles must alternate between user and assistant"
        blocks = msg["content"]
        if isinstance(blocks, str):
            blocks = [{"type": "text", "text": blocks}]
        if not blocks:
            return f"messages.{i}: content must not be empty"
        results = [b for b in blocks if b["type"] == "tool_result"]
        for j, b in enumerate(blocks):
            if b["type"] == "text" and not b["text"] and i < len(msgs) - 1:
                return f"messages.{i}.content.{j}: text blocks must be non-empty"
            if b["type"] == "tool_result" and b["tool_use_id"] not in prior_tool_ids:
                return f"messages.{i}.content.{j}: unexpected tool_use_id"
            if b["type"] == "tool_use" and not body.get("tools"):
                return "tools: requests with tool_use blocks must define tools"
        if results and blocks[: len(results)] != results:
            return f"messages.{i}: tool_result blocks must come first"
        prior_tool_ids = {b["id"] for b in blocks if b["type"] == "tool_use"}
    return None


class AnthropicUpstream(Upstream):
    """A scripted Messages API; `answers` are served in order, then echoes.

    `echo` sets `Answer` fields (usage numbers) of the echoed answers.
    """

    def __init__(self, **echo: Any) -> None:
        super().__init__({MESSAGES_PATH: self.handle, COUNT_PATH: self.count})
        self.answers: deque[Answer] = deque()
        self.echo = echo

    def queue(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def handle(self, rec: Recorded) -> Reply:
        refused = _refuse_headers(rec)
        if refused is not None:
            return refused
        try:
            body = rec.json
        except ValueError:
            return error(400, "invalid_request_error", "invalid JSON body")
        why = check(rec)
        if why is not None:
            return error(400, "invalid_request_error", why)
        answer = self.answers.popleft() if self.answers else _echo(body, self.echo)
        if body.get("stream"):
            return Reply(events=events(answer, body["model"]))
        return Reply(json=message(answer, body["model"]))

    def count(self, rec: Recorded) -> Reply:
        refused = _refuse_headers(rec)
        if refused is not None:
            return refused
        words = sum(len(str(m["content"]).split()) for m in rec.json["messages"])
        return Reply(json={"input_tokens": 10 + words})


def _refuse_headers(rec: Recorded) -> Reply | None:
    bearer = rec.headers.get("authorization", "").removeprefix("Bearer ")
    if not (rec.headers.get("x-api-key") or bearer):
        return error(401, "authentication_error", "x-api-key header is required")
    if rec.headers.get("anthropic-version") not in API_VERSIONS:
        return error(400, "invalid_request_error", "anthropic-version is invalid")
    return None


def _echo(body: dict[str, Any], fields: dict[str, Any]) -> Answer:
    content = body["messages"][-1]["content"]
    if not isinstance(content, str):
        content = " ".join(b.get("text", "") for b in content if b["type"] == "text")
    return text(f"echo: {content}", **fields)


def make_upstream(**echo: Any) -> AnthropicUpstream:
    return AnthropicUpstream(**echo)
