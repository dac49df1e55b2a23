"""OpenAI chunks -> Anthropic stream events (EventTranslator, pure)."""

from __future__ import annotations

from typing import Any

from crabllm_sync.wire.anthropic.response import (
    message_id,
    stop_reason,
    usage_from_openai,
)
from crabllm_sync.wire.anthropic.values import _dict, _dicts, _str

Event = tuple[str, dict[str, Any]]


class EventTranslator:
    """Feed OpenAI chunks, get Anthropic (event name, payload) pairs back.

    The sequence is message_start, then per block content_block_start / _delta /
    _stop, then message_delta (stop_reason, usage) and message_stop from finish().
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block: int | None = None  # index of the open block
        self.block_type: str | None = None
        self.count = 0  # blocks opened so far
        self.tools: dict[int, int] = {}  # OpenAI tool_call index -> block index
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            out.append(self._start(chunk))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in _dicts(chunk.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = _dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.extend(self._open("thinking"))
                out.append(
                    self._delta({"type": "thinking_delta", "thinking": reasoning})
                )
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.extend(self._open("text"))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for pos, call in enumerate(_dicts(delta.get("tool_calls"))):
                out.extend(self._tool_delta(pos, call))
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[Event]:
        """The closing events; call once when the chunks end."""
        out: list[Event] = []
        if not self.started:
            out.append(self._start({}))
        out.extend(self._close())
        usage = usage_from_openai(self.usage)
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(self.finish_reason),
                        "stop_sequence": None,
                    },
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _start(self, chunk: dict[str, Any]) -> Event:
        self.started = True
        return (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id(_str(chunk.get("id"))),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        )

    def _open(self, kind: str, block: dict[str, Any] | None = None) -> list[Event]:
        if self.block is not None and self.block_type == kind and block is None:
            return []
        out = self._close()
        index = self.count
        self.count += 1
        self.block, self.block_type = index, kind
        if block is None:
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        return out

    def _close(self) -> list[Event]:
        if self.block is None:
            return []
        index, self.block, self.block_type = self.block, None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> Event:
        return (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": self.block if index is None else index,
                "delta": delta,
            },
        )

    def _tool_delta(self, pos: int, call: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        key = call.get("index", pos)
        if not isinstance(key, int):
            key = pos
        fn = _dict(call.get("function"))
        if key not in self.tools:
            block = {
                "type": "tool_use",
                "id": _str(call.get("id")) or f"call_{key}",
                "name": _str(fn.get("name")),
                "input": {},
            }
            out.extend(self._open("tool_use", block))
            self.tools[key] = self.count - 1
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            # A delta for an earlier call (rare interleaving) still goes to its index.
            out.append(
                self._delta(
                    {"type": "input_json_delta", "partial_json": args},
                    self.tools[key],
                )
            )
        return out
