"""Anthropic Messages request -> the equivalent OpenAI chat request (pure)."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from crabllm_sync.errors import InvalidRequestError, UnsupportedError
from crabllm_sync.wire import completions as oai
from crabllm_sync.wire.anthropic.models import _BLOCKS

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def to_chat(req: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request -> the equivalent OpenAI chat request."""
    messages: list[dict[str, Any]] = []
    system = _system_text(req.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(req["messages"]):
        content = msg["content"]
        if isinstance(content, list):
            content = [
                _checked(b, f"messages.{i}.content.{j}") for j, b in enumerate(content)
            ]
        if msg["role"] == "assistant":
            turn = _assistant(content)
            if turn is not None:  # an empty turn (thinking only) has nothing to say
                messages.append(turn)
        elif msg["role"] == "system":  # a system turn inside messages stays there
            text = _system_text(content)
            if text:
                messages.append({"role": "system", "content": text})
        else:
            messages.extend(_user(content, f"messages.{i}.content"))
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequestError(
            "messages: no content to send (every block was empty or dropped)",
            param="messages",
        )
    out: dict[str, Any] = {
        "model": req["model"],
        "messages": messages,
        "max_tokens": req["max_tokens"],
    }
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if req.get(src) is not None:
            out[dst] = req[src]
    if req.get("stop_sequences"):
        out["stop"] = list(req["stop_sequences"])
    if req.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user_id = (req.get("metadata") or {}).get("user_id")
    if user_id:
        out["user"] = user_id
    tools = [t for t in req.get("tools") or () if not _is_tool_search(t)]
    if tools:
        # Deferred loading is Anthropic's tool search: elsewhere every tool is sent.
        out["tools"] = [_tool(t) for t in tools]
    effort = _effort(req.get("thinking"))
    if effort is not None:
        out["reasoning_effort"] = effort
    choice = req.get("tool_choice")
    if choice:
        kind = choice.get("type")
        if kind == "tool" and choice.get("name"):
            out["tool_choice"] = {
                "type": "function",
                "function": {"name": choice["name"]},
            }
        elif kind in _TOOL_CHOICE:
            out["tool_choice"] = _TOOL_CHOICE[kind]
        else:
            raise UnsupportedError(
                f"tool_choice type '{kind}' cannot be sent to this provider",
                param="tool_choice",
            )
        if choice.get("disable_parallel_tool_use") and req.get("tools"):
            out["parallel_tool_calls"] = False
    return out


def _is_tool_search(tool: dict[str, Any]) -> bool:
    """Anthropic's tool search server tool (it serves defer_loading tools)."""
    return str(tool.get("type") or "").startswith("tool_search_tool")


def _effort(thinking: Any) -> str | None:
    """thinking.budget_tokens -> reasoning_effort (the nearest level)."""
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int):
        return "medium"
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def _checked(block: dict[str, Any], where: str) -> dict[str, Any]:
    """The block, once the fields translation reads have the right types."""
    model = _BLOCKS.get(block.get("type", ""))
    if model is not None:
        try:
            model.model_validate(block)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join([where, *(str(x) for x in err["loc"])])
            msg = "is required" if err["type"] == "missing" else err["msg"]
            raise InvalidRequestError(f"'{loc}': {msg}", param=loc) from None
    return block


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    blocks = [_checked(b, f"system.{i}") for i, b in enumerate(system)]
    return "\n\n".join(b["text"] for b in blocks if b.get("type") == "text")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    # Server tools (web_search_*, bash_*, ...) run at Anthropic; nothing else has them.
    if tool.get("type") not in (None, "custom") or tool.get("input_schema") is None:
        raise UnsupportedError(
            f"tool '{tool.get('name')}' of type '{tool.get('type')}' is an Anthropic "
            "server tool; only custom tools (with input_schema) can be translated",
            param="tools",
        )
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """One user turn -> tool messages (first, answering the calls) then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "tool_result":
            text, images = _tool_result(block, f"{where}.{j}.content")
            tools.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
            # OpenAI tool messages carry text only; images follow as user content.
            parts.extend(images)
        else:
            part = _part(block)
            if part is not None:
                parts.append(part)
    out = list(tools)
    if parts:
        out.append(oai.user_message(parts, "\n\n"))
    return out


def _tool_result(block: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    if content is None:
        text, images = "", []
    elif isinstance(content, str):
        text, images = content, []
    else:
        content = [_checked(b, f"{where}.{k}") for k, b in enumerate(content)]
        texts = [b["text"] for b in content if b.get("type") == "text"]
        images = [p for b in content if b.get("type") == "image" for p in [_part(b)]]
        text = "\n\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return text, [p for p in images if p is not None]


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    """One Anthropic content block -> an OpenAI content part (None: dropped)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return {"type": "text", "text": _source_str(source, "data", block)}
        if source.get("type") == "base64":
            return {
                "type": "file",
                "file": {
                    "filename": block.get("title") or "document.pdf",
                    "file_data": _source_url(block),
                },
            }
        raise UnsupportedError(
            f"document source '{source.get('type')}' cannot be sent to this provider",
            param="messages",
        )
    if kind in ("thinking", "redacted_thinking"):
        return None  # only Anthropic can read its own thinking blocks back
    raise UnsupportedError(
        f"content block type '{kind}' cannot be sent to this provider",
        param="messages",
    )


def _source_url(block: dict[str, Any]) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        media = source.get("media_type") or "application/octet-stream"
        if not isinstance(media, str):
            media = "application/octet-stream"
        return f"data:{media};base64,{_source_str(source, 'data', block)}"
    if source.get("type") == "url":
        return _source_str(source, "url", block)
    raise InvalidRequestError(
        f"{block.get('type')} source must be base64 or url", param="messages"
    )


def _source_str(source: dict[str, Any], key: str, block: dict[str, Any]) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"{block.get('type')} source needs a non-empty string '{key}'",
            param="messages",
        )
    return value


def _assistant(content: Any) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    if not calls and not "".join(texts):
        return None
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out
