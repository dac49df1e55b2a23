"""OpenAI chat messages -> Converse system blocks and alternating turns:
text, images, documents, audio, cache points, reasoning and tool blocks. Pure;
also owns the refusal helpers the rest of the request translation uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

from crabllm_sync.errors import (
    UnsupportedError,
    invalid_param,
    unsupported_param,
)

PROVIDER = "bedrock"

IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/jpg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}

DOCUMENT_FORMATS = {
    "application/pdf": "pdf",
    "text/csv": "csv",
    "application/msword": "doc",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("docx"),
    "application/vnd.ms-excel": "xls",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
    "text/html": "html",
    "text/plain": "txt",
    "text/markdown": "md",
}

AUDIO_FORMATS = ("mp3", "wav", "flac", "ogg", "opus", "aac", "m4a", "webm", "pcm")

_TOOL_ID = re.compile(r"^[a-zA-Z0-9_.:-]{1,64}$")

_DOC_NAME_BAD = re.compile(r"[^a-zA-Z0-9\s\-()\[\]]+")


def _refuse(param: str, why: str = "") -> UnsupportedError:
    return unsupported_param(param, f"the {PROVIDER} provider (Converse)", why)


def _tool_use_id(call_id: Any, param: str) -> str:
    """A Converse-valid toolUseId for an OpenAI tool call id, stable per input."""
    if not isinstance(call_id, str) or not call_id:
        raise invalid_param(param, "a tool call id is required")
    if _TOOL_ID.match(call_id):
        return call_id
    # Ids minted by other providers may hold characters Converse rejects: map
    # them deterministically so the call and its result still match.
    digest = hashlib.sha256(call_id.encode()).hexdigest()[:12]
    cleaned = re.sub(r"[^a-zA-Z0-9_.:-]", "_", call_id)[:51]
    return f"{cleaned}_{digest}"


def _data_url(url: str, param: str) -> tuple[str, bytes]:
    """(mime type, bytes) of a base64 data: URL."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise invalid_param(
            param, "expected a base64 data URL (data:<mime>;base64,...)"
        )
    mime = head[len("data:") : -len(";base64")].split(";")[0].strip().lower()
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_param(param, "the data URL is not valid base64") from None
    if not raw:
        raise invalid_param(param, "the data URL is empty")
    return mime, raw


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise invalid_param(f"{param}.image_url.url", "a URL string is required")
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = IMAGE_FORMATS.get(f"image/{ext}")
        if fmt is None:
            raise invalid_param(
                f"{param}.image_url.url", "an s3:// image needs a known extension"
            )
        return {"image": {"format": fmt, "source": {"s3Location": {"uri": url}}}}
    if not url.startswith("data:"):
        raise _refuse(
            f"{param}.image_url.url",
            "Bedrock takes image bytes, not links; send the image as a "
            "data:image/...;base64 URL (or an s3:// URI)",
        )
    mime, raw = _data_url(url, f"{param}.image_url.url")
    fmt = IMAGE_FORMATS.get(mime)
    if fmt is None:
        raise _refuse(
            f"{param}.image_url.url", f"image type {mime!r} (png, jpeg, gif, webp)"
        )
    return {"image": {"format": fmt, "source": {"bytes": raw}}}


def _document_name(filename: Any, index: int) -> str:
    stem = filename.rsplit(".", 1)[0] if isinstance(filename, str) else ""
    # Converse allows letters, digits, single spaces, hyphens, () and [].
    name = " ".join(_DOC_NAME_BAD.sub(" ", stem).split())[:200]
    return name or f"document-{index}"


def _file_block(part: dict[str, Any], param: str, index: int) -> dict[str, Any]:
    spec = part.get("file") or {}
    if spec.get("file_id"):
        raise _refuse(f"{param}.file.file_id", "send the file inline as file_data")
    data = spec.get("file_data")
    if not isinstance(data, str):
        raise invalid_param(f"{param}.file.file_data", "a data URL is required")
    mime, raw = _data_url(data, f"{param}.file.file_data")
    if mime in IMAGE_FORMATS:
        return {"image": {"format": IMAGE_FORMATS[mime], "source": {"bytes": raw}}}
    fmt = DOCUMENT_FORMATS.get(mime)
    if fmt is None:
        raise _refuse(f"{param}.file.file_data", f"document type {mime!r}")
    name = _document_name(spec.get("filename"), index)
    return {"document": {"format": fmt, "name": name, "source": {"bytes": raw}}}


def _audio_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    spec = part.get("input_audio") or {}
    fmt = spec.get("format")
    if fmt not in AUDIO_FORMATS:
        raise _refuse(f"{param}.input_audio.format", f"audio format {fmt!r}")
    try:
        raw = base64.b64decode(spec.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise invalid_param(f"{param}.input_audio.data", "not valid base64") from None
    return {"audio": {"format": fmt, "source": {"bytes": raw}}}


def _content_blocks(
    content: Any, param: str, *, allow: frozenset[str]
) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) -> Converse content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise invalid_param(param, "content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allow:
            raise _refuse(f"{p}.type", f"content part type {kind!r} here")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise invalid_param(f"{p}.{kind}", "a string is required")
            if text:
                blocks.append({"text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part, p))
        elif kind == "input_audio":
            blocks.append(_audio_block(part, p))
        elif kind == "file":
            blocks.append(_file_block(part, p, j))
        point = _cache_point(part.get("cache_control"), f"{p}.cache_control")
        if point is not None:
            blocks.append(point)
    return blocks


def _cache_point(control: Any, param: str) -> dict[str, Any] | None:
    """Anthropic-style `cache_control` on a part -> a Converse cachePoint after it."""
    if control is None:
        return None
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise invalid_param(param, 'expected {"type": "ephemeral", "ttl"?}')
    point: dict[str, Any] = {"type": "default"}
    ttl = control.get("ttl")
    if ttl is not None:
        if ttl not in ("5m", "1h"):
            raise invalid_param(f"{param}.ttl", "'5m' or '1h'")
        point["ttl"] = ttl
    return {"cachePoint": point}


_USER_PARTS = frozenset({"text", "image_url", "input_audio", "file"})

_ASSISTANT_PARTS = frozenset({"text", "refusal"})

_TEXT_PARTS = frozenset({"text"})


def _reasoning_blocks(msg: dict[str, Any], param: str) -> list[dict[str, Any]]:
    """Echoed thinking_blocks -> reasoningContent blocks (signatures kept)."""
    blocks: list[dict[str, Any]] = []
    for k, tb in enumerate(msg.get("thinking_blocks") or []):
        p = f"{param}.thinking_blocks[{k}]"
        kind = tb.get("type") if isinstance(tb, dict) else None
        if kind == "thinking":
            text: dict[str, Any] = {"text": tb.get("thinking") or ""}
            if tb.get("signature"):
                text["signature"] = tb["signature"]
            blocks.append({"reasoningContent": {"reasoningText": text}})
        elif kind == "redacted_thinking":
            try:
                raw = base64.b64decode(tb.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise invalid_param(f"{p}.data", "not valid base64") from None
            blocks.append({"reasoningContent": {"redactedContent": raw}})
        else:
            raise invalid_param(
                f"{p}.type", "expected 'thinking' or 'redacted_thinking'"
            )
    return blocks


def _tool_use_block(call: dict[str, Any], param: str) -> dict[str, Any]:
    fn = call.get("function") or {}
    args = fn.get("arguments")
    if args in (None, ""):
        parsed: Any = {}
    else:
        try:
            parsed = json.loads(args)
        except (TypeError, ValueError):
            raise invalid_param(
                f"{param}.function.arguments", "must be a JSON object string"
            ) from None
    if not isinstance(parsed, dict):
        raise invalid_param(f"{param}.function.arguments", "must be a JSON object")
    return {
        "toolUse": {
            "toolUseId": _tool_use_id(call.get("id"), f"{param}.id"),
            "name": fn.get("name"),
            "input": parsed,
        }
    }


def _assistant_blocks(msg: dict[str, Any], param: str) -> list[dict[str, Any]]:
    # Claude requires the signed reasoning first, then text, then tool use.
    blocks = _reasoning_blocks(msg, param)
    blocks += _content_blocks(
        msg.get("content"), f"{param}.content", allow=_ASSISTANT_PARTS
    )
    for k, call in enumerate(msg.get("tool_calls") or []):
        blocks.append(_tool_use_block(call, f"{param}.tool_calls[{k}]"))
    if msg.get("function_call"):
        raise _refuse(f"{param}.function_call", "use tool_calls")
    return blocks


def _tool_result_blocks(msg: dict[str, Any], param: str) -> list[dict[str, Any]]:
    blocks = _content_blocks(msg.get("content"), f"{param}.content", allow=_TEXT_PARTS)
    # A tool result cannot hold a cachePoint: it goes after the result.
    points = [b for b in blocks if "cachePoint" in b]
    content = [b for b in blocks if "cachePoint" not in b]
    result = {
        "toolResult": {
            "toolUseId": _tool_use_id(msg.get("tool_call_id"), f"{param}.tool_call_id"),
            # Converse wants at least one block; an empty result is empty text.
            "content": content or [{"text": ""}],
        }
    }
    return [result, *points[-1:]]


def _system_blocks(content: Any, param: str) -> list[dict[str, Any]]:
    return _content_blocks(content, param, allow=_TEXT_PARTS)


def _messages(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, turns): system hoisted, same-role neighbours merged."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            system += _system_blocks(msg.get("content"), f"{param}.content")
            continue
        if role == "user":
            blocks = _content_blocks(
                msg.get("content"), f"{param}.content", allow=_USER_PARTS
            )
        elif role == "assistant":
            blocks = _assistant_blocks(msg, param)
        elif role == "tool":
            role, blocks = "user", _tool_result_blocks(msg, param)
        else:
            raise _refuse(f"{param}.role", f"role {role!r}; use tool messages")
        if not blocks:
            continue  # nothing to say: Converse rejects empty turns
        if turns and turns[-1]["role"] == role:
            # Converse requires alternating roles: merge neighbours.
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns
