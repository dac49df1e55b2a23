"""Responses API input items <-> chat messages, and what a reasoning item
carries across turns. Pure."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from crabllm_sync.errors import InvalidRequestError

ENCRYPTED_PREFIX = "crabllm."


def invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {message}", param=param)


def obj(value: Any, param: str) -> dict[str, Any]:
    """`value` if it is an object (None: an empty one), else a 400 naming it."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(param, "expected an object")
    return value


def flat_name(namespace: str, name: str) -> str:
    """A namespaced function's name among the provider's flat functions."""
    return f"{namespace}__{name}"


def input_items(value: Any) -> list[dict[str, Any]]:
    """`input` as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input", "expected a string or a list of items")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid(f"input[{i}]", "expected an object")
    return value


def to_messages(items: list[dict[str, Any]], omitted: list[str]) -> list[dict]:
    """Input items -> chat messages. Consecutive assistant output (text,
    function calls, reasoning) joins into one assistant message; what a
    reasoning item carries (signed thinking, Gemini's signatures) goes back
    onto the assistant message and the tool calls it belongs to."""
    messages: list[dict[str, Any]] = []
    pending: list[Reasoning] = []  # reasoning items before their assistant turn
    call_extras: dict[str, Any] = {}  # call_id -> the tool call's extra_content

    def assistant() -> dict[str, Any]:
        last = messages[-1] if messages else None
        if last is None or last["role"] != "assistant":
            last = {"role": "assistant", "content": None}
            messages.append(last)
        for reasoning in pending:
            _attach(last, reasoning)
        pending.clear()
        return last

    for i, item in enumerate(items):
        where = f"input[{i}]"
        kind = str(item.get("type", "message"))
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise invalid(f"{where}.role", f"unknown role {role!r}")
            content = _content(item.get("content"), f"{where}.content")
            if role == "assistant":
                msg = assistant()
                text = content if isinstance(content, str) else _joined(content)
                msg["content"] = (msg.get("content") or "") + text
            else:
                role = "system" if role == "developer" else role
                messages.append({"role": role, "content": content})
        elif kind == "function_call":
            msg = assistant()
            name = item.get("name")
            if item.get("namespace"):
                name = flat_name(item["namespace"], name)
            msg.setdefault("tool_calls", []).append(
                {
                    "id": required(item, "call_id", where),
                    "type": "function",
                    "function": {"name": name, "arguments": item.get("arguments", "")},
                }
            )
        elif kind == "custom_tool_call":
            msg = assistant()
            name = item.get("name")
            if item.get("namespace"):
                name = flat_name(item["namespace"], name)
            arguments = orjson.dumps({"input": item.get("input", "")}).decode()
            msg.setdefault("tool_calls", []).append(
                {
                    "id": required(item, "call_id", where),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            )
        elif kind in ("function_call_output", "custom_tool_call_output"):
            output = item.get("output")
            if isinstance(output, list):
                output = _joined(_content(output, f"{where}.output"))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": required(item, "call_id", where),
                    "content": output if isinstance(output, str) else "",
                }
            )
        elif kind == "reasoning":
            reasoning = decode_reasoning(item.get("encrypted_content"))
            if reasoning is None:
                omitted.append("input.reasoning")
                continue
            call_extras.update(reasoning.get("calls") or {})
            last = messages[-1] if messages else None
            if reasoning.get("trailing") and last and last["role"] == "assistant":
                _attach(last, reasoning)  # it came after its turn's output
            else:
                pending.append(reasoning)
        elif kind == "item_reference":
            raise invalid(f"{where}.type", "item_reference is not supported")
        else:
            omitted.append(f"input.{kind}")
    for msg in messages:
        for call in msg.get("tool_calls") or ():
            if call["id"] in call_extras:
                call["extra_content"] = call_extras[call["id"]]
    return messages


# What a reasoning item's encrypted_content carries: signed thinking blocks
# ("blocks"), a message's extra_content ("extra": Gemini's text signature),
# tool calls' extra_content by call id ("calls": Gemini's call signatures),
# and whether it followed its turn's output ("trailing").
Reasoning = dict[str, Any]


def _attach(msg: dict[str, Any], reasoning: Reasoning) -> None:
    if reasoning.get("blocks"):
        msg.setdefault("thinking_blocks", []).extend(reasoning["blocks"])
    if reasoning.get("extra"):
        msg["extra_content"] = reasoning["extra"]


def required(item: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(item.get(key), str):
        raise invalid(f"{where}.{key}", "is required")
    return item[key]


def _content(value: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content -> chat content (text parts and images)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(where, "expected a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(value):
        kind = str(part.get("type")) if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise invalid(f"{where}[{i}].image_url", "is required (file_id is not)")
            image: dict[str, Any] = {"url": url}
            if part.get("detail") not in (None, "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            data = part.get("file_data")
            if not isinstance(data, str):
                raise invalid(
                    f"{where}[{i}].file_data",
                    "is required (file_id and file_url are not supported)",
                )
            file = {"file_data": data}
            if part.get("filename"):
                file["filename"] = part["filename"]
            parts.append({"type": "file", "file": file})
        else:
            raise invalid(f"{where}[{i}].type", f"part type {kind!r} is not supported")
    return parts


def _joined(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


def encode_reasoning(reasoning: Reasoning) -> str:
    """What a reasoning item carries, as its `encrypted_content`: readable by
    this gateway only in the sense that nobody else knows the format (the
    provider's own signatures inside are what protect it)."""
    data = {k: v for k, v in reasoning.items() if v}
    return ENCRYPTED_PREFIX + base64.urlsafe_b64encode(orjson.dumps(data)).decode()


def decode_reasoning(value: Any) -> Reasoning | None:
    """What an `encrypted_content` we made carries, else None."""
    if not isinstance(value, str) or not value.startswith(ENCRYPTED_PREFIX):
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(value[len(ENCRYPTED_PREFIX) :]))
    except (ValueError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def portable_items(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored conversation items as input for a native provider that never saw
    them: without our ids and statuses, output text without its logprobs, and
    without reasoning items (their encrypted_content is ours or another
    provider's, not readable there)."""
    out = []
    for item in items:
        if item.get("type") == "reasoning":
            continue
        kept = {k: v for k, v in item.items() if k not in ("id", "status")}
        if isinstance(kept.get("content"), list):
            kept["content"] = [
                {k: v for k, v in part.items() if k != "logprobs"}
                if isinstance(part, dict)
                else part
                for part in kept["content"]
            ]
        out.append(kept)
    return out
