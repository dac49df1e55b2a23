"""Messages stream events -> OpenAI chunks (ChunkTranslator) and the readers
around it: SSE lines -> events -> chunks. Pure: no transport call here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from crabllm_sync import sse
from crabllm_sync.errors import UpstreamError
from crabllm_sync.providers.anthropic.response import map_stop_reason, map_usage
from crabllm_sync.wire import completions as oai

# Anthropic error types (in a stream's error event) -> the HTTP status they mean.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def _stream_error(event: Mapping[str, Any], provider: str) -> UpstreamError:
    err = event.get("error") or {}
    kind = err.get("type") or "api_error"
    message = err.get("message") or kind
    return UpstreamError(
        f"{provider}: {message}",
        provider=provider,
        upstream_status=_ERROR_STATUS.get(kind, 500),
    )


class ChunkTranslator:
    """Messages stream events -> OpenAI chunks, one event at a time.

    Tool calls keep OpenAI's incremental form: the first chunk of a call has its
    index, id and name; the following ones only argument pieces.
    """

    def __init__(
        self,
        *,
        created: int = 0,
        include_usage: bool = False,
        provider: str = "anthropic",
    ) -> None:
        self.created = created
        self.include_usage = include_usage
        self.provider = provider
        self.id = ""
        self.model = ""
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.done = False
        self._blocks: dict[int, dict[str, Any]] = {}  # native index -> state
        self._tool_count = 0
        self._has_started = False

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chunks one native event becomes; an error event raises."""
        chunks = self._feed(event)
        if chunks and not self._has_started:
            # The role chunk waits for the first real one: an overloaded error
            # right after message_start then fails the attempt before the
            # client saw a byte, so it can still be retried.
            self._has_started = True
            chunks.insert(0, self._delta({"role": "assistant", "content": ""}))
        return chunks

    def _feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id = msg.get("id", "")
            self.model = msg.get("model", "")
            self.usage.update(msg.get("usage") or {})
            return []
        if kind == "content_block_start":
            return self._start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._stop(event.get("index", 0))
        if kind == "message_delta":
            # Usage in message_delta is cumulative: it replaces what we had.
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            self.finish_reason = map_stop_reason(reason)
            return [self._delta({}, self.finish_reason)]
        if kind == "message_stop":
            self.done = True
            if not self.include_usage:
                return []
            usage = map_usage(self.usage)
            return [oai.usage_chunk(self.id, self.model, self.created, usage)]
        if kind == "error":
            raise _stream_error(event, self.provider)
        return []  # ping, and event types added after this was written

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict:
        return oai.chunk(self.id, self.model, self.created, delta, finish)

    def _start(self, index: int, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind}
        self._blocks[index] = state
        if kind == "text":
            return (
                [self._delta({"content": block["text"]})] if block.get("text") else []
            )
        if kind == "thinking":
            state["thinking"] = [block.get("thinking", "")]
            state["signature"] = block.get("signature", "")
            text = block.get("thinking")
            return [self._delta({"reasoning_content": text})] if text else []
        if kind == "redacted_thinking":
            tb = {"type": "redacted_thinking", "data": block.get("data", "")}
            return [self._delta({"thinking_blocks": [tb]})]
        if kind == "tool_use":
            state["tool_index"] = self._tool_count
            self._tool_count += 1
            # Anthropic starts with input {} and streams it; take it if it came whole.
            given = block.get("input")
            args = json.dumps(given, ensure_ascii=False) if given else ""
            state["has_arguments"] = bool(args)
            call = oai.tool_call_start(
                state["tool_index"], block.get("id"), block.get("name"), args
            )
            return [self._delta({"tool_calls": [call]})]
        return []

    def _block_delta(
        self, index: int, delta: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        state = self._blocks.get(index, {})
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text", "")
            return [self._delta({"content": text})] if text else []
        if kind == "input_json_delta" and "tool_index" in state:
            piece = delta.get("partial_json", "")
            if not piece:
                return []
            state["has_arguments"] = True
            call = oai.tool_call_arguments(state["tool_index"], piece)
            return [self._delta({"tool_calls": [call]})]
        if kind == "thinking_delta":
            text = delta.get("thinking", "")
            state.setdefault("thinking", []).append(text)
            return [self._delta({"reasoning_content": text})] if text else []
        if kind == "signature_delta":
            state["signature"] = state.get("signature", "") + delta.get("signature", "")
        return []

    def _stop(self, index: int) -> list[dict[str, Any]]:
        state = self._blocks.get(index, {})
        if state.get("type") == "tool_use" and not state.get("has_arguments"):
            # A call without input streams no JSON at all; OpenAI clients parse
            # the arguments, so they get the empty object the Message would hold.
            call = oai.tool_call_arguments(state["tool_index"], "{}")
            return [self._delta({"tool_calls": [call]})]
        if state.get("type") != "thinking":
            return []
        # The whole signed block, once, so a client can echo it next turn.
        tb = {
            "type": "thinking",
            "thinking": "".join(state.get("thinking", [])),
            "signature": state.get("signature", ""),
        }
        return [self._delta({"thinking_blocks": [tb]})]


def _chunks(
    events: Iterator[sse.Event], translator: ChunkTranslator, provider: str
) -> Iterator[dict[str, Any]]:
    try:
        for event in events:
            payload = sse.event_json(event, provider)
            if isinstance(payload, dict):
                yield from translator.feed(payload)
            if translator.done:
                # Read on to the end of the body so the connection returns to
                # the pool instead of being closed (as openai.read_chunks does).
                for _ in events:
                    pass
                return
        raise UpstreamError(
            f"{provider}: stream ended before message_stop",
            provider=provider,
            upstream_status=502,
        )
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
