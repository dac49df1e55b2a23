"""ConverseStream events (as boto3 decodes them) -> OpenAI chunks (pure)."""

from __future__ import annotations

import base64
from typing import Any

from crabllm_sync.providers.bedrock.codes import stream_error
from crabllm_sync.providers.bedrock.response import _usage, map_stop_reason
from crabllm_sync.wire import completions as oai


class ChunkTranslator:
    """ConverseStream events -> OpenAI chat.completion.chunk dicts."""

    def __init__(
        self, *, model: str, created: int, id: str, include_usage: bool
    ) -> None:
        self.id = id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool_calls index
        self._reasoning: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        return oai.chunk(self.id, self.model, self.created, delta, finish_reason)

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Zero or more chunks for one ConverseStream event."""
        out: list[dict[str, Any]] = []
        for name, payload in event.items():
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                out += handler(payload or {})
            elif name.endswith("Exception"):
                raise stream_error(name, payload or {})
        return out

    def _on_messageStart(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_contentBlockStart(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        tool = (payload.get("start") or {}).get("toolUse")
        if tool is None:
            return []
        index = len(self._tools)
        self._tools[payload.get("contentBlockIndex", 0)] = index
        call = oai.tool_call_start(index, tool["toolUseId"], tool["name"])
        return [self._chunk({"tool_calls": [call]})]

    def _on_contentBlockDelta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        block = payload.get("contentBlockIndex", 0)
        delta = payload.get("delta") or {}
        if "text" in delta:
            return [self._chunk({"content": delta["text"]})] if delta["text"] else []
        if "toolUse" in delta:
            piece = delta["toolUse"].get("input", "")
            index = self._tools.get(block)
            if index is None or not piece:
                return []
            call = oai.tool_call_arguments(index, piece)
            return [self._chunk({"tool_calls": [call]})]
        if "reasoningContent" in delta:
            rc = delta["reasoningContent"]
            state = self._reasoning.setdefault(block, {"text": []})
            if "signature" in rc:
                state["signature"] = rc["signature"]
            if "redactedContent" in rc:
                state["redacted"] = state.get("redacted", b"") + rc["redactedContent"]
            if rc.get("text"):
                state["text"].append(rc["text"])
                return [self._chunk({"reasoning_content": rc["text"]})]
        return []

    def _on_contentBlockStop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._reasoning.pop(payload.get("contentBlockIndex", 0), None)
        if state is None:
            return []
        # The signed block arrives whole once it is complete, ready to echo.
        echo = []
        if state.get("signature"):
            echo.append(
                {
                    "type": "thinking",
                    "thinking": "".join(state["text"]),
                    "signature": state["signature"],
                }
            )
        if state.get("redacted"):
            echo.append(
                {
                    "type": "redacted_thinking",
                    "data": base64.b64encode(state["redacted"]).decode(),
                }
            )
        return [self._chunk({"thinking_blocks": echo})] if echo else []

    def _on_messageStop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({}, map_stop_reason(payload.get("stopReason")))]

    def _on_metadata(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage = _usage(payload.get("usage"))
        if not self.include_usage:
            return []
        return [oai.usage_chunk(self.id, self.model, self.created, self.usage)]
