"""Gemini streams: framing (SSE with `alt=sse`, else one JSON array), the
observer of native Gemini events, and chat chunks -> Gemini events. Pure.

Gemini streams whole GenerateContentResponse objects: text as it comes, a
function call whole, the last event with finishReason and usageMetadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from crabllm_sync import pricing
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError
from crabllm_sync.formats.chat import unfinished
from crabllm_sync.formats.gemini.response import (
    finish_reason,
    function_call,
    native_usage,
    response_id,
    to_google,
    usage_metadata,
)
from crabllm_sync.providers.google.stream import upstream_error


class Framing:
    """Events -> bytes: `data:` lines (alt=sse) or the elements of one JSON
    array (`[`, `,`-separated, `]` with the last batch)."""

    def __init__(self, sse: bool) -> None:
        self.sse = sse
        self.opened = False

    def frame(self, events: Sequence[dict[str, Any]], last: bool) -> bytes:
        if self.sse:
            return b"".join(b"data: " + orjson.dumps(e) + b"\r\n\r\n" for e in events)
        out = []
        for event in events:
            out.append(b"," if self.opened else b"[")
            self.opened = True
            out.append(orjson.dumps(event))
        if last:
            out.append(b"]" if self.opened else b"[]")
        return b"".join(out)

    def error(self, err: GatewayError) -> bytes:
        """The stream's last element: Google's error body."""
        return self.frame([to_google(err)], last=True)


class NativeEncoder:
    """Native Gemini events re-framed as they came."""

    def __init__(self, sse: bool) -> None:
        self.framing = Framing(sse)

    def encode(self, batch: Sequence[dict[str, Any]], last: bool) -> bytes:
        return self.framing.frame(batch, last)

    def error(self, err: GatewayError) -> bytes:
        return self.framing.error(err)


class TranslatedEncoder(NativeEncoder):
    """Chat chunks -> Gemini events, framed."""

    def __init__(self, model: str, sse: bool) -> None:
        super().__init__(sse)
        self.translator = EventTranslator(model)

    def encode(self, batch: Sequence[dict[str, Any]], last: bool) -> bytes:
        events = [e for chunk in batch for e in self.translator.feed(chunk)]
        if last:
            events += self.translator.finish()
        return self.framing.frame(events, last)


class NativeObserver:
    """Usage, finish detection and the upstream's error over native events.

    Every event carries the usage so far; the last one the final count. A
    stream that stops before a finishReason is an upstream failure. A client
    that leaves early is charged for the text relayed, estimated from its length
    when no event said more.
    """

    hooks_see_items = False  # extensions' on_chunk takes chat chunks only

    def __init__(
        self, ctx: RequestContext, redact: Callable[[str], str] = lambda s: s
    ) -> None:
        self.ctx = ctx
        self.redact = redact
        self.finished = False
        self.chars = 0
        self.failure: GatewayError | None = None

    def first(self, event: dict[str, Any], provider: str) -> None:
        if "error" in event and "candidates" not in event:
            raise upstream_error(event, provider)

    def feed(self, event: dict[str, Any]) -> dict[str, Any]:
        if "error" in event and "candidates" not in event:
            failure = upstream_error(event, self.ctx.provider or "?")
            failure.message = self.redact(failure.message)
            self.failure = failure
            return to_google(failure)
        usage = native_usage(event)
        if usage is not None:
            self.ctx.usage = usage
        for cand in event.get("candidates") or ():
            for part in (cand.get("content") or {}).get("parts") or ():
                self.chars += len(part.get("text") or "")
            self.finished = self.finished or bool(cand.get("finishReason"))
        if (event.get("promptFeedback") or {}).get("blockReason"):
            self.finished = True
        return event

    def end(self) -> None:
        if not self.finished:
            raise unfinished(self.ctx)

    def interrupted(self) -> None:
        usage = dict(self.ctx.usage or {})
        estimate = pricing.estimate_tokens(self.chars)
        if estimate > (usage.get("completion_tokens") or 0):
            usage["completion_tokens"] = estimate
            usage["prompt_tokens"] = usage.get("prompt_tokens") or 0
            usage["total_tokens"] = usage["prompt_tokens"] + estimate
            self.ctx.usage = usage


class EventTranslator:
    """Chat chunks -> Gemini stream events.

    Text and thoughts go out as they come. Tool-call fragments are gathered
    and sent whole, with finishReason, in the last event, which waits for the
    usage chunk (it comes after the finish) so it carries the final count.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = ""
        self.calls: dict[
            int, dict[int, dict[str, Any]]
        ] = {}  # candidate -> index -> call
        self.finishes: dict[int, str | None] = {}
        self.usage: dict[str, Any] | None = None
        self.closed = False

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        self.id = self.id or response_id(chunk.get("id"))
        candidates = []
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            parts = self._parts(index, choice.get("delta") or {})
            if parts:
                content = {"role": "model", "parts": parts}
                candidates.append({"content": content, "index": index})
            if choice.get("finish_reason"):
                self.finishes[index] = choice["finish_reason"]
        out = [self._event(candidates)] if candidates else []
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            if self.finishes:
                out += self.finish()
        return out

    def finish(self) -> list[dict[str, Any]]:
        if self.closed:
            return []
        self.closed = True
        candidates = []
        for index in sorted(self.finishes or {0: None}):
            calls = self.calls.get(index, {})
            parts = [function_call(calls[k]) for k in sorted(calls)]
            candidates.append(
                {
                    "content": {"role": "model", "parts": parts or [{"text": ""}]},
                    "finishReason": finish_reason(self.finishes.get(index)),
                    "index": index,
                }
            )
        event = self._event(candidates)
        event["usageMetadata"] = usage_metadata(self.usage)
        return [event]

    def _parts(self, index: int, delta: dict[str, Any]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        if delta.get("reasoning_content"):
            parts.append({"text": delta["reasoning_content"], "thought": True})
        sig = ((delta.get("extra_content") or {}).get("google") or {}).get(
            "thought_signature"
        )
        if delta.get("content") or sig:
            part: dict[str, Any] = {"text": delta.get("content") or ""}
            if sig:
                part["thoughtSignature"] = sig
            parts.append(part)
        for frag in delta.get("tool_calls") or ():
            call = self.calls.setdefault(index, {}).setdefault(
                frag.get("index", 0),
                {"id": None, "function": {"name": "", "arguments": ""}},
            )
            call["id"] = frag.get("id") or call["id"]
            fn = frag.get("function") or {}
            call["function"]["name"] += fn.get("name") or ""
            call["function"]["arguments"] += fn.get("arguments") or ""
            if frag.get("extra_content"):
                call["extra_content"] = frag["extra_content"]
        return parts

    def _event(self, candidates: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "candidates": candidates,
            "modelVersion": self.model,
            "responseId": self.id,
        }
