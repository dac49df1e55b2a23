"""Converse response -> OpenAI chat.completion; the stop reason, usage,
reasoning echo and ids the stream translation shares. Pure.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from crabllm_sync.wire import completions as oai

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def map_stop_reason(reason: str | None) -> str:
    """Converse stopReason -> OpenAI finish_reason."""
    # malformed_model_output / malformed_tool_use and anything new end as "stop".
    return STOP_REASONS.get(reason or "", "stop")


def map_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Converse TokenUsage -> OpenAI usage (cache tokens counted as prompt)."""
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    prompt = int(usage.get("inputTokens") or 0) + read + write
    details: dict[str, int] = {"cached_tokens": read}
    if "cacheWriteInputTokens" in usage:
        details["cache_write_tokens"] = write
    completion = int(usage.get("outputTokens") or 0)
    return oai.usage(prompt, completion, prompt_details=details)


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    return map_usage(usage or {})


def _reasoning_out(blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(reasoning text, thinking_blocks to echo) from reasoningContent blocks."""
    texts: list[str] = []
    echo: list[dict[str, Any]] = []
    for block in blocks:
        rc = block["reasoningContent"]
        if "reasoningText" in rc:
            rt = rc["reasoningText"]
            texts.append(rt.get("text", ""))
            if rt.get("signature"):
                echo.append(
                    {
                        "type": "thinking",
                        "thinking": rt.get("text", ""),
                        "signature": rt["signature"],
                    }
                )
        elif "redactedContent" in rc:
            echo.append(
                {
                    "type": "redacted_thinking",
                    "data": base64.b64encode(rc["redactedContent"]).decode(),
                }
            )
    return "".join(texts), echo


def _completion_id(request_id: str | None, seed: Any) -> str:
    if request_id:
        return f"chatcmpl-{request_id}"
    digest = hashlib.sha256(json.dumps(seed, default=str).encode()).hexdigest()
    return f"chatcmpl-{digest[:24]}"


def translate_response(
    response: dict[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """A Converse response -> an OpenAI chat.completion."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            tu = block["toolUse"]
            args = json.dumps(tu.get("input", {}), ensure_ascii=False)
            calls.append(oai.tool_call(tu["toolUseId"], tu["name"], args))
        elif "reasoningContent" in block:
            reasoning.append(block)
        elif "citationsContent" in block:
            for piece in block["citationsContent"].get("content") or []:
                texts.append(piece.get("text", ""))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        text, echo = _reasoning_out(reasoning)
        message["reasoning_content"] = text
        if echo:
            message["thinking_blocks"] = echo
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
    finish = map_stop_reason(response.get("stopReason"))
    return oai.completion(
        _completion_id(request_id, content),
        model,
        created,
        [oai.choice(message, finish)],
        _usage(response.get("usage")),
    )
