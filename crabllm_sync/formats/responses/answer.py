"""Canonical chat answer -> Responses API `Response` object (bridged models).

Pure. Output items in the order the model produced them: reasoning (its
signed blocks in `encrypted_content`), the message text, then function
calls (a flattened namespace function mapped back to its namespace).
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson

from crabllm_sync.formats.responses.items import encode_reasoning
from crabllm_sync.formats.responses.request import Bridged

# Fields of the request echoed on the Response, with OpenAI's defaults.
_ECHO_DEFAULTS: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "metadata": {},
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "prompt_cache_key": None,
    "reasoning": {"effort": None, "summary": None},
    "safety_identifier": None,
    "service_tier": "default",
    "store": True,
    "temperature": 1.0,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "top_p": 1.0,
    "truncation": "disabled",
    "user": None,
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


_ID_PREFIXES = {
    "message": "msg",
    "function_call": "fc",
    "function_call_output": "fco",
    "custom_tool_call": "ctc",
    "custom_tool_call_output": "ctco",
    "reasoning": "rs",
}


def item_with_id(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as the input_items list shows it: typed, with an id and
    a status, a message's string content as one text part."""
    kind = item.get("type", "message")
    out = {**item, "type": kind}
    out.setdefault("id", new_id(_ID_PREFIXES.get(kind, "item")))
    if kind == "message" and isinstance(out.get("content"), str):
        part = "output_text" if out.get("role") == "assistant" else "input_text"
        text = out["content"]
        out["content"] = [
            output_text(text) if part == "output_text" else {"type": part, "text": text}
        ]
    if kind in ("message", "function_call", "function_call_output"):
        out.setdefault("status", "completed")
    return out


def shell(
    body: dict[str, Any], response_id: str, created_at: int, model: str
) -> dict[str, Any]:
    """The Response before any output: status in_progress."""
    out: dict[str, Any] = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "model": model,
        "output": [],
        "usage": None,
    }
    for key, default in _ECHO_DEFAULTS.items():
        value = body.get(key)
        out[key] = default if value is None else value
    return out


def usage(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage -> Responses usage."""
    if not chat_usage:
        return None
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    details = chat_usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": int(cached),
            "cache_write_tokens": int(
                chat_usage.get("cache_creation_input_tokens") or 0
            ),
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": int(details.get("reasoning_tokens") or 0)
        },
        "total_tokens": int(chat_usage.get("total_tokens") or prompt + completion),
    }


def status_of(finish_reason: str | None) -> tuple[str, dict[str, Any] | None]:
    """(status, incomplete_details) for a chat finish_reason."""
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status != "in_progress" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def summarized(body: dict[str, Any]) -> bool:
    """Whether the client asked for reasoning summaries (reasoning.summary)."""
    reasoning = body.get("reasoning")
    return isinstance(reasoning, dict) and bool(reasoning.get("summary"))


def reasoning_item(
    item_id: str,
    text: str,
    blocks: list[dict[str, Any]],
    status: str = "completed",
    *,
    as_summary: bool = False,
    **signatures: Any,
) -> dict[str, Any]:
    """A reasoning item; `blocks` (signed thinking) and `signatures` (extra,
    calls, trailing: see request.Reasoning) go in its encrypted_content. The
    provider's reasoning text is its content, and its summary too when the
    client asked for one (`as_summary`: what providers return is already a
    summary or the thinking itself; there is no other)."""
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": []}
    if text:
        item["content"] = [{"type": "reasoning_text", "text": text}]
        if as_summary:
            item["summary"] = [{"type": "summary_text", "text": text}]
    carried = {"blocks": blocks, **signatures}
    if any(carried.values()):
        item["encrypted_content"] = encode_reasoning(carried)
    item["status"] = status
    return item


def call_extras(tool_calls: Any) -> dict[str, Any]:
    """call id -> extra_content (Gemini's signature), of the calls that have one."""
    return {
        c["id"]: c["extra_content"]
        for c in tool_calls
        if isinstance(c, dict) and c.get("id") and c.get("extra_content")
    }


def custom_input(arguments: str) -> str:
    """A custom tool's input from the arguments of the function it was sent
    as (arguments that are not that object are the input as they are)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get("input"), str):
        return value["input"]
    return arguments


def tool_call_item(
    call_id: str,
    name: str,
    arguments: str,
    namespaces: dict[str, tuple[str, str]],
    status: str = "completed",
    *,
    custom: bool = False,
) -> dict[str, Any]:
    """A function_call item, or a custom_tool_call (`custom`: a custom tool
    sent upstream as a function, whose arguments carry its input)."""
    item: dict[str, Any] = {
        "id": new_id("ctc" if custom else "fc"),
        "type": "custom_tool_call" if custom else "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
    }
    if custom:
        item["input"] = custom_input(arguments) if status == "completed" else ""
    else:
        item["arguments"] = arguments
    if name in namespaces:
        item["namespace"], item["name"] = namespaces[name]
    return item


def from_canonical(
    completion: dict[str, Any],
    body: dict[str, Any],
    bridged: Bridged,
    response_id: str,
    created_at: int,
) -> dict[str, Any]:
    """A chat completion as the Response of `body`."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    out = shell(body, response_id, created_at, body["model"])
    output: list[dict[str, Any]] = []
    blocks = message.get("thinking_blocks") or []
    extra = message.get("extra_content")
    calls = call_extras(message.get("tool_calls") or ())
    if message.get("reasoning_content") or blocks or extra or calls:
        text = message.get("reasoning_content") or ""
        item = reasoning_item(
            new_id("rs"),
            text,
            blocks,
            as_summary=summarized(body),
            extra=extra,
            calls=calls,
        )
        output.append(item)
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content:
        output.append(message_item(new_id("msg"), content))
    if message.get("refusal"):
        item = message_item(new_id("msg"), "")
        item["content"] = [{"type": "refusal", "refusal": message["refusal"]}]
        output.append(item)
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        name, arguments = fn.get("name", ""), fn.get("arguments") or ""
        call_id = call.get("id") or new_id("call")
        output.append(
            tool_call_item(
                call_id,
                name,
                arguments,
                bridged.namespaces,
                custom=name in bridged.custom,
            )
        )
    status, incomplete = status_of(choice.get("finish_reason"))
    out["status"] = status
    out["incomplete_details"] = incomplete
    out["output"] = output
    out["usage"] = usage(completion.get("usage"))
    if status == "completed":
        out["completed_at"] = created_at
    return out
