"""Native Responses (openai, azure): the body goes upstream as sent (model
resolved), the answer and events come back as they came.

The observer reads usage from the answer's terminal event
(response.completed / .incomplete / .failed) and passes an upstream `error`
event on as the stream's last (secrets cut). The encoder re-frames the
events unchanged; its own error event carries the next sequence_number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from crabllm_sync import pricing, sse
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError, UpstreamError

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """Responses usage -> the canonical (chat) usage accounting reads."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("input_tokens") or 0)
    completion = int(usage.get("output_tokens") or 0)
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": int(usage.get("total_tokens") or prompt + completion),
        "prompt_tokens_details": {"cached_tokens": int(cached)},
        "completion_tokens_details": {"reasoning_tokens": int(reasoning)},
    }


def answer_usage(response: Any) -> dict[str, Any] | None:
    return chat_usage(response.get("usage") if isinstance(response, dict) else None)


def _error_of(data: str, provider: str) -> UpstreamError:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = {}
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):
        payload = payload["response"].get("error") or {}
    message = payload.get("message") if isinstance(payload, dict) else None
    return UpstreamError(
        f"{provider}: {message or 'the response failed'}",
        provider=provider,
        upstream_status=502,
    )


class NativeObserver:
    """Usage, the finished Response and the upstream's own failure, over
    native Responses events."""

    hooks_see_items = False  # extensions' on_chunk takes chat chunks only

    def __init__(
        self,
        ctx: RequestContext,
        redact: Callable[[str], str] = lambda s: s,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.ctx = ctx
        self.redact = redact
        self.on_done = on_done  # given the finished Response (to store it)
        self.finished = False
        self.delta_chars = 0  # of output text relayed, should the client leave
        self.failure: GatewayError | None = None

    def first(self, event: sse.Event, provider: str) -> None:
        """An error as the very first event is a failed call (retried)."""
        if _kind(event) == "error":
            raise _error_of(event.data, provider)

    def feed(self, event: sse.Event) -> sse.Event:
        kind = _kind(event)
        if kind == "response.output_text.delta":
            self.delta_chars += len(event.data)  # an estimate, parsed never
        elif kind in TERMINAL:
            self.finished = True
            response = orjson.loads(event.data).get("response") or {}
            usage = answer_usage(response)
            if usage is not None:
                self.ctx.usage = usage
            if kind == "response.failed":
                self.failure = _error_of(event.data, self.ctx.provider or "?")
            elif self.on_done is not None:
                self.on_done(response)
        elif kind == "error":  # passed on, secrets cut; the stream ends
            event = sse.Event(self.redact(event.data), event.event)
            self.failure = _error_of(event.data, self.ctx.provider or "?")
        return event

    def end(self) -> None:
        if not self.finished:
            provider = self.ctx.provider
            raise UpstreamError(
                f"{provider}: the stream ended before the response finished",
                provider=provider,
                upstream_status=502,
            )

    def interrupted(self) -> None:
        if self.ctx.usage is None:
            output = pricing.estimate_tokens(self.delta_chars)
            self.ctx.usage = {
                "prompt_tokens": 0,
                "completion_tokens": output,
                "total_tokens": output,
            }


def _kind(event: sse.Event) -> str | None:
    """The event's type: its `event:` name, else the `type` in its data."""
    if event.event:
        return event.event
    try:
        payload = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        return None
    return payload.get("type") if isinstance(payload, dict) else None


class NativeEncoder:
    """Native events re-framed as they came; counts them for the error's
    sequence_number."""

    def __init__(self) -> None:
        self.sent = 0

    def encode(self, batch: Sequence[sse.Event], last: bool) -> bytes:
        self.sent += len(batch)
        return b"".join([_frame(event) for event in batch])

    def error(self, err: GatewayError) -> bytes:
        code = "rate_limit_exceeded" if err.http_status == 429 else "server_error"
        event = {
            "type": "error",
            "code": code,
            "message": err.message,
            "param": err.param,
            "sequence_number": self.sent,
        }
        return sse.encode_event("error", event)


def _frame(event: sse.Event) -> bytes:
    name = f"event: {event.event}\n" if event.event else ""
    data = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    return f"{name}{data}\n".encode()
