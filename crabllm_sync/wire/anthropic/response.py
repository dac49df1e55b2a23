"""OpenAI chat completion -> Anthropic message; usage both ways and the
native stream's usage and error events. Pure.
"""

from __future__ import annotations

from typing import Any

import orjson

from crabllm_sync.errors import UpstreamError
from crabllm_sync.wire import completions
from crabllm_sync.wire.anthropic.values import _arguments, _dict, _dicts, _int, _str

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_from_openai(usage: Any) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage (input_tokens excludes cache reads)."""
    usage = _dict(usage)
    prompt = _int(usage.get("prompt_tokens"))
    cached = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(0, prompt - cached - written),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def usage_to_openai(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage (also providers/anthropic's map_usage).

    prompt_tokens counts all input (uncached + cache reads + cache writes), as
    OpenAI's does; the raw cache counts stay alongside so cost can price them.
    A count that is not a non-negative int counts as 0.
    """
    usage = _dict(usage)
    uncached = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    return completions.usage(
        uncached + read + written,
        output,
        prompt_details={"cached_tokens": read},
        cache_read_input_tokens=read,
        cache_creation_input_tokens=written,
    )


def message_usage(message: Any) -> dict[str, Any]:
    """The OpenAI-shaped usage of a native Anthropic message."""
    return usage_to_openai(message.get("usage") if isinstance(message, dict) else None)


def event_usage(data: str) -> dict[str, int]:
    """The usage counts in a native message_start / message_delta event's data."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    event = _dict(event)
    usage = _dict(_dict(event.get("message")).get("usage") or event.get("usage"))
    return {k: v for k, v in usage.items() if isinstance(v, int)}


def event_error(data: str, provider: str) -> UpstreamError:
    """A native `error` event -> UpstreamError (overloaded and rate limits retry)."""
    try:
        err = _dict(_dict(orjson.loads(data)).get("error"))
    except orjson.JSONDecodeError:
        err = {}
    kind, message = _str(err.get("type")), _str(err.get("message"))
    status = {"overloaded_error": 529, "rate_limit_error": 429}.get(kind, 500)
    return UpstreamError(
        f"{provider}: {message or kind or 'stream error'}",
        provider=provider,
        upstream_status=status,
    )


def message_id(openai_id: str | None) -> str:
    return f"msg_{openai_id}" if openai_id else "msg_crabllm"


def from_chat(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic message (first choice)."""
    choices = resp.get("choices")
    choice = _dict(choices[0] if isinstance(choices, list) and choices else None)
    msg = _dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for i, call in enumerate(_dicts(msg.get("tool_calls"))):
        fn = _dict(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": _str(call.get("id")) or f"call_{i}",
                "name": _str(fn.get("name")),
                "input": _arguments(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(_str(resp.get("id"))),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(_str(choice.get("finish_reason"))),
        "stop_sequence": None,
        "usage": usage_from_openai(resp.get("usage")),
    }
