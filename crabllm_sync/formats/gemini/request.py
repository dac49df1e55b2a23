"""Gemini generateContent request -> canonical (OpenAI chat) request. Pure.

The mirror image of providers/google/request.py and messages.py (chat ->
Gemini). Anything with no chat equivalent is refused by name, never dropped
quietly, except `safetySettings`: safety is the serving provider's own.
"""

from __future__ import annotations

from typing import Any

import orjson

from crabllm_sync.errors import InvalidRequestError, UnsupportedError
from crabllm_sync.wire import completions as oai

FORMAT = "gemini"

_KNOWN = frozenset(
    {
        "contents",
        "systemInstruction",
        "generationConfig",
        "tools",
        "toolConfig",
        "safetySettings",
        "model",
    }
)
_SIMPLE_CONFIG = {
    "maxOutputTokens": "max_tokens",
    "temperature": "temperature",
    "topP": "top_p",
    "topK": "top_k",
    "candidateCount": "n",
    "seed": "seed",
    "presencePenalty": "presence_penalty",
    "frequencyPenalty": "frequency_penalty",
}
_OTHER_CONFIG = frozenset(
    {
        "stopSequences",
        "responseMimeType",
        "responseSchema",
        "responseJsonSchema",
        "thinkingConfig",
        "responseModalities",
    }
)
_LEVELS = frozenset({"minimal", "low", "medium", "high"})
_AUDIO = {
    "audio/wav": "wav",
    "audio/x-wav": "wav",
    "audio/mp3": "mp3",
    "audio/mpeg": "mp3",
}


def refuse(param: str, why: str = "") -> UnsupportedError:
    detail = f": {why}" if why else ""
    return UnsupportedError(
        f"'{param}' is not supported through the gateway{detail}", param=param
    )


def invalid(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {why}", param=param)


def to_canonical(
    body: dict[str, Any], model: str, *, stream: bool = False
) -> dict[str, Any]:
    """A Gemini generateContent body for `model` -> an OpenAI chat request."""
    for key, value in body.items():
        if value is not None and key not in _KNOWN:
            raise refuse(key)
    messages = _system(body.get("systemInstruction"))
    messages += _messages(body.get("contents"))
    chat: dict[str, Any] = {"model": model, "messages": messages}
    if stream:
        chat["stream"] = True
    chat.update(_generation_config(body.get("generationConfig") or {}))
    tools = _tools(body.get("tools") or [])
    if tools:
        chat["tools"] = tools
    choice = _tool_choice(body.get("toolConfig"))
    if choice is not None:
        chat["tool_choice"] = choice
    return chat


# -- turns ---------------------------------------------------------------------


def _system(instruction: Any) -> list[dict[str, Any]]:
    if not instruction:
        return []
    if isinstance(instruction, str):
        return [{"role": "system", "content": instruction}]
    texts = []
    for j, part in enumerate(instruction.get("parts") or []):
        if "text" not in part:
            raise refuse(f"systemInstruction.parts[{j}]", "only text parts")
        texts.append(part["text"])
    text = "\n".join(texts)
    return [{"role": "system", "content": text}] if text else []


def call_id(i: int, j: int) -> str:
    """The id of the function call at contents[i].parts[j] when it has none."""
    return f"call_g{i}_{j}"


def _messages(contents: Any) -> list[dict[str, Any]]:
    if not isinstance(contents, list) or not contents:
        raise invalid("contents", "is required: a list of turns")
    out: list[dict[str, Any]] = []
    pending: list[tuple[str, str]] = []  # (name, id) of calls not yet answered
    for i, content in enumerate(contents):
        if not isinstance(content, dict):
            raise invalid(f"contents[{i}]", "must be an object")
        role = content.get("role") or "user"
        parts = content.get("parts") or []
        if role == "model":
            out.append(_model_turn(parts, i, pending))
        elif role in ("user", "function", "tool"):
            out += _user_turn(parts, i, pending)
        else:
            raise invalid(f"contents[{i}].role", f"unknown role '{role}'")
    return out


def _model_turn(
    parts: list[dict[str, Any]], i: int, pending: list[tuple[str, str]]
) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    signature = None
    for j, part in enumerate(parts):
        sig = part.get("thoughtSignature")
        if "functionCall" in part:
            fc = part["functionCall"] or {}
            cid = fc.get("id") or call_id(i, j)
            args = fc.get("args") or {}
            call = {
                "id": cid,
                "type": "function",
                "function": {
                    "name": fc.get("name") or "",
                    "arguments": orjson.dumps(args).decode(),
                },
            }
            if sig:
                call["extra_content"] = {"google": {"thought_signature": sig}}
            calls.append(call)
            pending.append((fc.get("name") or "", cid))
        elif part.get("thought"):
            continue  # the model's own thinking: no provider reads another's back
        elif "text" in part:
            texts.append(part["text"] or "")
            signature = signature or sig
        elif set(part) == {"thoughtSignature"}:
            signature = signature or sig
        else:
            raise refuse(f"contents[{i}].parts[{j}]", _kind(part))
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if signature:
        message["extra_content"] = {"google": {"thought_signature": signature}}
    return message


def _user_turn(
    parts: list[dict[str, Any]], i: int, pending: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Function responses become tool messages; the rest one user message."""
    out: list[dict[str, Any]] = []
    content: list[dict[str, Any]] = []
    for j, part in enumerate(parts):
        where = f"contents[{i}].parts[{j}]"
        if "functionResponse" in part:
            out.append(_tool_message(part["functionResponse"] or {}, pending, where))
        elif "text" in part:
            if part.get("thought"):
                continue
            content.append({"type": "text", "text": part["text"] or ""})
        elif "inlineData" in part:
            content.append(_inline(part["inlineData"] or {}, where))
        elif "fileData" in part:
            content.append(_file(part["fileData"] or {}, where))
        else:
            raise refuse(where, _kind(part))
    if content:
        out.append(oai.user_message(content))
    return out


def _tool_message(
    fr: dict[str, Any], pending: list[tuple[str, str]], where: str
) -> dict[str, Any]:
    """A functionResponse answers the call with its id, else the oldest
    unanswered call of that name."""
    name = fr.get("name") or ""
    cid = fr.get("id")
    match = next((k for k, (n, c) in enumerate(pending) if c == cid), None)
    if match is None:
        match = next((k for k, (n, _) in enumerate(pending) if n == name), None)
    if match is None:
        raise invalid(
            where + ".functionResponse",
            f"answers no functionCall '{name}' of an earlier model turn",
        )
    _, cid = pending.pop(match)
    response = fr.get("response")
    return {
        "role": "tool",
        "tool_call_id": cid,
        "content": orjson.dumps(response if response is not None else {}).decode(),
    }


def _inline(blob: dict[str, Any], where: str) -> dict[str, Any]:
    mime = blob.get("mimeType") or ""
    data = blob.get("data") or ""
    if mime.startswith("image/"):
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
    if mime in _AUDIO:
        return {
            "type": "input_audio",
            "input_audio": {"data": data, "format": _AUDIO[mime]},
        }
    if mime == "application/pdf" or mime.startswith("text/"):
        url = f"data:{mime};base64,{data}"
        return {"type": "file", "file": {"file_data": url, "filename": "document"}}
    raise refuse(where + ".inlineData.mimeType", f"'{mime}'")


def _file(ref: dict[str, Any], where: str) -> dict[str, Any]:
    uri = ref.get("fileUri") or ""
    mime = ref.get("mimeType") or ""
    if uri.startswith(("http://", "https://")) and (
        not mime or mime.startswith("image/")
    ):
        return {"type": "image_url", "image_url": {"url": uri}}
    raise refuse(where + ".fileData", "only image URLs; send other files as inlineData")


def _kind(part: dict[str, Any]) -> str:
    kinds = ", ".join(sorted(k for k in part if k != "thoughtSignature")) or "empty"
    return f"part of kind {kinds}"


# -- generation config, tools ---------------------------------------------------


def _generation_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if value is None:
            continue
        where = f"generationConfig.{key}"
        if key in _SIMPLE_CONFIG:
            out[_SIMPLE_CONFIG[key]] = value
        elif key not in _OTHER_CONFIG:
            raise refuse(where)
    if cfg.get("stopSequences"):
        out["stop"] = list(cfg["stopSequences"])
    modalities = cfg.get("responseModalities")
    if modalities and [m.upper() for m in modalities] != ["TEXT"]:
        raise refuse("generationConfig.responseModalities", "only TEXT is served")
    fmt = _response_format(cfg)
    if fmt is not None:
        out["response_format"] = fmt
    effort = _effort(cfg.get("thinkingConfig"))
    if effort is not None:
        out["reasoning_effort"] = effort
    return out


def _response_format(cfg: dict[str, Any]) -> dict[str, Any] | None:
    mime = cfg.get("responseMimeType")
    schema = cfg.get("responseJsonSchema")
    if schema is None and cfg.get("responseSchema") is not None:
        schema = json_schema(cfg["responseSchema"])
    if mime in (None, "text/plain") and schema is None:
        return None
    if mime not in (None, "application/json"):
        raise refuse("generationConfig.responseMimeType", f"'{mime}'")
    if schema is None:
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


def _effort(thinking: Any) -> str | None:
    """thinkingConfig -> reasoning_effort (a budget to the nearest level)."""
    if not thinking:
        return None
    level = thinking.get("thinkingLevel")
    if level is not None:
        level = str(level).lower()
        if level not in _LEVELS:
            raise invalid("generationConfig.thinkingConfig.thinkingLevel", f"'{level}'")
        return level
    budget = thinking.get("thinkingBudget")
    if budget is None or budget == -1:
        return None  # dynamic thinking: the provider's default
    if budget == 0:
        return None  # no thinking: what a chat request without effort asks
    return "low" if budget <= 2048 else "medium" if budget <= 8192 else "high"


def json_schema(schema: Any) -> Any:
    """Gemini's Schema (OpenAPI subset, upper-case types) -> JSON Schema."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out["type"] = value.lower()
        elif key in ("properties",):
            out[key] = {k: json_schema(v) for k, v in (value or {}).items()}
        elif key in ("items", "anyOf"):
            out[key] = json_schema(value)
        elif key in ("nullable", "propertyOrdering"):
            continue
        else:
            out[key] = value
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        for key in tool:
            if key != "functionDeclarations":
                raise refuse(f"tools[{i}].{key}", "only functionDeclarations")
        for decl in tool.get("functionDeclarations") or []:
            fn: dict[str, Any] = {"name": decl.get("name")}
            if decl.get("description"):
                fn["description"] = decl["description"]
            params = decl.get("parametersJsonSchema")
            if params is None and decl.get("parameters") is not None:
                params = json_schema(decl["parameters"])
            fn["parameters"] = params or {"type": "object", "properties": {}}
            out.append({"type": "function", "function": fn})
    return out


def _tool_choice(config: Any) -> Any:
    fcc = (config or {}).get("functionCallingConfig")
    if not fcc:
        return None
    mode = str(fcc.get("mode") or "AUTO").upper()
    names = fcc.get("allowedFunctionNames") or []
    if mode in ("AUTO", "VALIDATED", "MODE_UNSPECIFIED"):
        return "auto"
    if mode == "NONE":
        return "none"
    if mode != "ANY":
        raise invalid("toolConfig.functionCallingConfig.mode", f"'{mode}'")
    if len(names) == 1:
        return {"type": "function", "function": {"name": names[0]}}
    if names:
        tools = [{"type": "function", "function": {"name": n}} for n in names]
        return {
            "type": "allowed_tools",
            "allowed_tools": {"mode": "required", "tools": tools},
        }
    return "required"
