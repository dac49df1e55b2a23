"""Anthropic Messages: translated to and from the canonical chat format, or
taken as-is by a deployment whose adapter declares the format native.

Translated: the request goes through wire.anthropic.to_chat, the answer back
through from_chat, and a stream of chat chunks becomes Anthropic events
(EventTranslator). Native: the body and events pass through; the observer
reads usage from message_start / message_delta and passes an upstream
`error` event on as the stream's last (with secrets cut out).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from crabllm_sync import errors, pricing, sse
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError
from crabllm_sync.wire import anthropic as wire

FORMAT = "messages"

to_canonical = wire.to_chat
from_canonical = wire.from_chat
answer_usage = wire.message_usage

# Block fields that are not text the model reads (ids, kinds, binary data).
_NOT_READ = frozenset(
    {"type", "id", "tool_use_id", "role", "cache_control", "source", "signature"}
)

# Fields of a content_block_delta that carry generated text.
_DELTA_TEXT = ("text", "partial_json", "thinking")


def estimate_count(body: dict[str, Any]) -> dict[str, Any]:
    """count_tokens where no provider counts: the request's text (system,
    messages, tools as JSON) at the gateway's 4 characters a token."""
    tools = orjson.dumps(body.get("tools") or []) if body.get("tools") else b""
    chars = _chars(body.get("system")) + _chars(body.get("messages")) + len(tools)
    return {"input_tokens": pricing.estimate_tokens(chars)}


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(map(_chars, value))
    if isinstance(value, dict):
        if value.get("type") in ("image", "document"):
            return 0  # binary: providers count it their own way
        if "input" in value and isinstance(value["input"], dict):
            value = {**value, "input": orjson.dumps(value["input"]).decode()}
        return sum(_chars(v) for k, v in value.items() if k not in _NOT_READ)
    return 0


class NativeObserver:
    """Usage, and the upstream's own error event, over native Anthropic events.

    Usage comes from message_start (input, and output so far: about 1 token)
    and message_delta (the final output count). A stream cut short before
    message_delta is charged for the text relayed so far, estimated from its
    length, not for the 1 token message_start announced.
    """

    hooks_see_items = False  # extensions' on_chunk takes chat chunks only

    def __init__(
        self, ctx: RequestContext, redact: Callable[[str], str] = lambda s: s
    ) -> None:
        self.ctx = ctx
        self.redact = redact
        self.usage: dict[str, Any] = {}
        self.final_usage = False  # a message_delta came
        self.deltas: list[str] = []  # data of relayed content_block_delta events
        self.failure: GatewayError | None = None

    def first(self, event: sse.Event, provider: str) -> None:
        """An error as the very first event is a failed call (retried)."""
        if event.event == "error":
            raise wire.event_error(event.data, provider)

    def feed(self, event: sse.Event) -> sse.Event:
        kind = event.event
        if kind == "content_block_delta":
            self.deltas.append(event.data)  # parsed only if the client leaves
        elif kind in ("message_start", "message_delta"):
            self.usage.update(wire.event_usage(event.data))
            self.ctx.usage = wire.usage_to_openai(self.usage)
            self.final_usage = self.final_usage or kind == "message_delta"
        elif kind == "error":  # passed on verbatim, secrets cut; the stream ends
            event = sse.Event(self.redact(event.data), "error")
            self.failure = wire.event_error(event.data, self.ctx.provider or "?")
        return event

    def end(self) -> None:
        """A native stream that ends is taken as finished (as Anthropic's SDK does)."""

    def interrupted(self) -> None:
        if self.final_usage:
            return
        estimate = pricing.estimate_tokens(sum(map(_delta_chars, self.deltas)))
        if estimate > self.usage.get("output_tokens", 0):
            self.usage["output_tokens"] = estimate
            self.ctx.usage = wire.usage_to_openai(self.usage)


def _delta_chars(data: str) -> int:
    """Characters of generated text in one content_block_delta's data."""
    try:
        delta = orjson.loads(data).get("delta")
    except (orjson.JSONDecodeError, AttributeError):
        return 0
    if not isinstance(delta, dict):
        return 0
    return sum(len(v) for k in _DELTA_TEXT if isinstance(v := delta.get(k), str))


class NativeEncoder:
    """Native events re-framed as they came."""

    def encode(self, batch: Sequence[sse.Event], last: bool) -> bytes:
        return b"".join([_frame(event) for event in batch])

    def error(self, err: GatewayError) -> bytes:
        return sse.encode_event("error", errors.to_anthropic(err))


def _frame(event: sse.Event) -> bytes:
    name = f"event: {event.event}\n" if event.event else ""
    data = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    return f"{name}{data}\n".encode()


class TranslatedEncoder(NativeEncoder):
    """Chat chunks -> Anthropic events; the last batch closes the message."""

    def __init__(self, model: str) -> None:
        self.translator = wire.EventTranslator(model)

    def encode(self, batch: Sequence[dict[str, Any]], last: bool) -> bytes:  # type: ignore[override]
        events = [e for chunk in batch for e in self.translator.feed(chunk)]
        if last:
            events += self.translator.finish()
        return b"".join([sse.encode_event(n, p) for n, p in events])
