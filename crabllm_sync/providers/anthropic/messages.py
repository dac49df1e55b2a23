"""OpenAI chat messages -> Messages API system blocks and alternating turns.

Pure; also owns the refusal helpers the rest of the request translation uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from crabllm_sync.errors import (
    UnsupportedError,
    invalid_param,
    unsupported_param,
)

# Message fields that may come back from an echoed assistant message.
# reasoning_content is our own output echoed back: thinking_blocks carry it signed.
_MESSAGE_FIELDS = frozenset(
    {
        "role",
        "content",
        "tool_calls",
        "tool_call_id",
        "thinking_blocks",
        "reasoning_content",
        # On the message itself (the AI SDK's openai-compatible provider puts
        # it there): a cache breakpoint after the message's last block.
        "cache_control",
    }
)

_EMPTY_MESSAGE_FIELDS = ("refusal", "audio", "function_call", "annotations", "name")


def _refuse(provider: str, param: str, why: str = "") -> UnsupportedError:
    return unsupported_param(param, f"provider '{provider}' (anthropic)", why)


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or []):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise invalid_param(
                f"{where}.content.{j}", "system messages take text only"
            )
        blocks.append(_text_block(part))
    return blocks


def _text_block(part: Mapping[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _image_block(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid_param(f"{where}.image_url.url", "is required")
    if url.startswith("data:"):
        source = _data_url_source(url, f"{where}.image_url.url")
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise invalid_param(f"{where}.image_url.url", "must be a data: or http(s) URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _data_url_source(url: str, where: str) -> dict[str, Any]:
    head, sep, data = url.partition(",")
    media_type, _, encoding = head[len("data:") :].partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise invalid_param(where, "a data URL must be data:<media type>;base64,<data>")
    return {"type": "base64", "media_type": media_type, "data": data}


def _file_block(part: Mapping[str, Any], where: str, provider: str) -> dict[str, Any]:
    file = part.get("file") or {}
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise _refuse(provider, f"{where}.file", "only inline file_data is supported")
    return {"type": "document", "source": _data_url_source(data, f"{where}.file")}


def _user_blocks(content: Any, where: str, provider: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for j, part in enumerate(content or []):
        kind = part.get("type") if isinstance(part, dict) else None
        at = f"{where}.content.{j}"
        if kind == "text":
            blocks.append(_text_block(part))
        elif kind == "image_url":
            blocks.append(_image_block(part, at))
        elif kind == "file":
            blocks.append(_file_block(part, at, provider))
        else:
            raise _refuse(provider, at, f"content part type '{kind}'")
    return blocks


def _assistant_blocks(
    msg: Mapping[str, Any], where: str, provider: str
) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    # Thinking first: the API wants the signed blocks back where they were.
    for block in msg.get("thinking_blocks") or []:
        if isinstance(block, dict) and block.get("type") in (
            "thinking",
            "redacted_thinking",
        ):
            blocks.append(dict(block))
        else:
            raise invalid_param(f"{where}.thinking_blocks", "unknown thinking block")
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for j, part in enumerate(content or []):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and part.get("text"):
                blocks.append(_text_block(part))
            elif kind == "refusal" and part.get("refusal"):
                blocks.append({"type": "text", "text": part["refusal"]})
            elif kind not in ("text", "refusal"):
                raise _refuse(provider, f"{where}.content.{j}", f"type '{kind}'")
    for k, call in enumerate(msg.get("tool_calls") or []):
        fn = call.get("function") or {}
        args = fn.get("arguments") or "{}"
        try:
            parsed = orjson.loads(args)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise invalid_param(
                f"{where}.tool_calls.{k}.function.arguments", "must be a JSON object"
            )
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": parsed,
            }
        )
    return blocks


def _tool_result(msg: Mapping[str, Any], where: str, provider: str) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    if not call_id:
        raise invalid_param(f"{where}.tool_call_id", "is required")
    content = msg.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif content:
        result["content"] = _user_blocks(content, where, provider)
    return result


def _cache_point(
    blocks: list[dict[str, Any]], msg: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """A message's own cache_control, on its last block (where the API reads it)."""
    if blocks and msg.get("cache_control"):
        blocks[-1] = {**blocks[-1], "cache_control": msg["cache_control"]}
    return blocks


def _translate_messages(
    messages: list[Mapping[str, Any]], provider: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant turns)."""
    system: list[dict[str, Any]] = []
    turns: list[tuple[str, list[dict[str, Any]], bool]] = []  # role, blocks, plain
    for i, msg in enumerate(messages):
        where = f"messages.{i}"
        role = msg.get("role")
        for key in msg:
            if key in _MESSAGE_FIELDS:
                continue
            if key in _EMPTY_MESSAGE_FIELDS and not msg[key]:
                continue
            raise _refuse(provider, f"{where}.{key}")
        if role in ("system", "developer"):
            system.extend(_cache_point(_system_blocks(msg.get("content"), where), msg))
            continue
        if role == "user":
            native_role, blocks = "user", _user_blocks(msg["content"], where, provider)
        elif role == "assistant":
            native_role, blocks = "assistant", _assistant_blocks(msg, where, provider)
        elif role == "tool":
            native_role, blocks = "user", [_tool_result(msg, where, provider)]
        else:
            raise _refuse(provider, f"{where}.role", f"role '{role}'")
        if not blocks:
            continue  # an empty assistant turn says nothing
        blocks = _cache_point(blocks, msg)
        plain = isinstance(msg.get("content"), str) and role != "tool"
        if turns and turns[-1][0] == native_role:
            # The API wants alternating roles: same-role neighbours become one turn.
            prev_role, prev_blocks, _ = turns[-1]
            turns[-1] = (prev_role, prev_blocks + blocks, False)
        else:
            turns.append((native_role, blocks, plain))
    out = []
    for role, blocks, plain in turns:
        content: Any = blocks
        if plain and len(blocks) == 1 and set(blocks[0]) == {"type", "text"}:
            content = blocks[0]["text"]
        out.append({"role": role, "content": content})
    return system, out
