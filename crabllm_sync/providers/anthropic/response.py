"""Messages API response -> OpenAI chat.completion (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crabllm_sync.wire import completions as oai
from crabllm_sync.wire.anthropic import usage_to_openai

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def map_stop_reason(reason: str | None) -> str | None:
    """Anthropic stop_reason -> OpenAI finish_reason."""
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "stop")


# Anthropic usage -> OpenAI usage lives with the Messages wire models, which
# /v1/messages pass-through uses too: one function for both paths.
map_usage = usage_to_openai


def translate_response(
    native: Mapping[str, Any], *, created: int = 0
) -> dict[str, Any]:
    """A Messages API response -> an OpenAI chat.completion."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in native.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
            thinking_blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking", ""),
                    "signature": block.get("signature", ""),
                }
            )
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "tool_use":
            # Arguments spaced and unescaped, as Anthropic streams them.
            args = json.dumps(block.get("input") or {}, ensure_ascii=False)
            tool_calls.append(oai.tool_call(block["id"], block["name"], args))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    finish = map_stop_reason(native.get("stop_reason"))
    return oai.completion(
        native.get("id", ""),
        native.get("model", ""),
        created,
        [oai.choice(message, finish)],
        map_usage(native.get("usage")),
    )
