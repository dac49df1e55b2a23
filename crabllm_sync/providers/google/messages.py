"""OpenAI chat messages -> Gemini systemInstruction parts and contents.

Pure; also owns the refusal helpers the rest of the request translation uses.
"""

from __future__ import annotations

import mimetypes
import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from crabllm_sync.errors import (
    UnsupportedError,
    invalid_param,
    unsupported_param,
)

PROVIDER = "google"

_GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")

_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[^;,]*)*?);base64,(.*)", re.S)


def _refuse(param: str, why: str = "") -> UnsupportedError:
    return unsupported_param(param, f"provider '{PROVIDER}'", why)


def _text_of(content: Any, where: str) -> str:
    """Text of a string or a list of text parts (system, tool, assistant)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            texts.append(part.get(kind) or "")
        else:
            raise _refuse(f"{where}.content[{j}].type", f"'{kind}' is not text")
    return "".join(texts)


def _signature(holder: dict[str, Any]) -> str | None:
    extra = holder.get("extra_content")
    if isinstance(extra, dict) and isinstance(extra.get("google"), dict):
        sig = extra["google"].get("thought_signature")
        return sig if isinstance(sig, str) else None
    return None


def _data_part(url: str, where: str) -> dict[str, Any]:
    m = _DATA_URL.fullmatch(url)
    if not m:
        raise invalid_param(
            where, "a data: URL must be base64 (data:<mime>;base64,...)"
        )
    return {
        "inlineData": {
            "mimeType": m.group(1) or "application/octet-stream",
            "data": m.group(3),
        }
    }


def _image_part(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise invalid_param(where, "image_url.url is required")
    if url.startswith("data:"):
        return _data_part(url, where)
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "gs"):
        raise _refuse(where, f"image URL scheme '{scheme}'; send a data: URL")
    mime, _ = mimetypes.guess_type(urlsplit(url).path)
    if not mime or not mime.startswith("image/"):
        raise _refuse(
            where,
            "Gemini needs the image type of a URL and it cannot be told from "
            "this URL's name; send the image as a data: URL",
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        at = f"{where}.content[{j}]"
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_image_part(part.get("image_url"), at + ".image_url"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = audio.get("format") or "wav"
            mime = {"mp3": "audio/mp3", "wav": "audio/wav"}.get(fmt, f"audio/{fmt}")
            parts.append(
                {"inlineData": {"mimeType": mime, "data": audio.get("data", "")}}
            )
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise _refuse(at + ".file.file_id", "send the file as file_data")
            data = file["file_data"]
            if not data.startswith("data:"):
                mime = mimetypes.guess_type(file.get("filename") or "")[0]
                data = f"data:{mime or 'application/pdf'};base64,{data}"
            parts.append(_data_part(data, at + ".file.file_data"))
        else:
            raise _refuse(at + ".type", f"content part type '{kind}'")
    return parts


def _tool_calls(msg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    calls = list(msg.get("tool_calls") or [])
    if msg.get("function_call"):
        calls.append({"type": "function", "function": msg["function_call"]})
    parts = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if call.get("type", "function") != "function":
            raise _refuse(at + ".type", f"tool call type '{call.get('type')}'")
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise invalid_param(
                at + ".function.arguments", "is not valid JSON"
            ) from None
        if not isinstance(args, dict):
            raise invalid_param(at + ".function.arguments", "must be a JSON object")
        fc: dict[str, Any] = {"name": fn.get("name"), "args": args}
        call_id = call.get("id")
        if call_id and not _GENERATED_ID.fullmatch(call_id):
            fc["id"] = call_id  # Gemini's own id goes back to it
        part: dict[str, Any] = {"functionCall": fc}
        sig = _signature(call)
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _function_response(
    msg: dict[str, Any], names: dict[str, str], where: str
) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id or "") or msg.get("name")
    if not name:
        raise invalid_param(
            where + ".tool_call_id",
            f"'{call_id}' matches no tool call of an earlier assistant message; "
            "Gemini needs the function name of each tool result",
        )
    text = _text_of(msg.get("content"), where)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"output": text}
    fr: dict[str, Any] = {"name": name, "response": response}
    if call_id and not _GENERATED_ID.fullmatch(call_id) and call_id in names:
        fr["id"] = call_id
    return {"functionResponse": fr}


def _contents(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) with same-role turns merged."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"), where)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            parts, gemini_role = _user_parts(msg.get("content"), where), "user"
        elif role == "assistant":
            text = _text_of(msg.get("content"), where)
            sig = _signature(msg)
            parts = [{"text": text}] if text or sig else []
            if sig:
                # Gemini's signature of a text answer (or of an empty part).
                parts[-1]["thoughtSignature"] = sig
            calls = _tool_calls(msg, where)
            for call, raw in zip(calls, msg.get("tool_calls") or [], strict=False):
                if raw.get("id"):
                    names[raw["id"]] = call["functionCall"]["name"]
            parts += calls
            gemini_role = "model"
        elif role == "tool":
            parts, gemini_role = [_function_response(msg, names, where)], "user"
        elif role == "function":
            legacy = {**msg, "tool_call_id": None}
            parts, gemini_role = [_function_response(legacy, names, where)], "user"
        else:
            raise _refuse(where + ".role", f"role '{role}'")
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents
