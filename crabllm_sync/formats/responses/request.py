"""Responses API request -> canonical chat request, for a bridged model.

Pure. Every field either maps, is echoed back on the Response only
(metadata, store, include, ...), or is named in the `omitted` list the view
turns into an `x-crabllm-omitted` header, a log line and a metric (or a 400
when the config asks for strictness). Nothing is dropped without a trace.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from crabllm_sync.errors import InvalidRequestError

# Hosted tools a bridged model cannot run (the provider's own search aside).
HOSTED_TOOLS = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
        "file_search",
        "code_interpreter",
        "computer_use_preview",
        "computer",
        "image_generation",
        "mcp",
        "local_shell",
        "shell",
        "apply_patch",
        "custom",
        "tool_search",
    }
)

# Fields that only shape the stored or echoed Response, or are hints a
# bridged provider has no use for: accepted, never sent upstream.
ECHOED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "stream",
        "store",
        "metadata",
        "include",
        "previous_response_id",
        "prompt_cache_key",
        "prompt_cache_retention",
        "client_metadata",
        "truncation",
        "service_tier",
        "safety_identifier",
        "stream_options",
    }
)

ENCRYPTED_PREFIX = "crabllm."


@dataclass
class Bridged:
    """The canonical chat request and what of the Responses request it left out."""

    chat: dict[str, Any]
    omitted: list[str] = field(default_factory=list)
    # flattened function name -> (namespace, name), to map calls back
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)


def _invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {message}", param=param)


def to_canonical(
    body: dict[str, Any], history: list[Any] | None = None, *, search: bool = False
) -> Bridged:
    """The chat request for `body`; `history`: the input and output items of
    the previous responses (previous_response_id), oldest first. `search`:
    the provider has its own web search (a `web_search` tool maps to it)."""
    out = Bridged(chat={"model": body["model"]})
    chat = out.chat
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions:
        if not isinstance(instructions, str):
            raise _invalid("instructions", "expected a string")
        messages.append({"role": "system", "content": instructions})
    items = list(history or []) + input_items(body.get("input"))
    messages += to_messages(items, out.omitted)
    if not messages:
        raise _invalid("input", "is required")
    chat["messages"] = messages
    _parameters(body, chat, out.omitted)
    _tools(body, out, search)
    if body.get("stream"):
        chat["stream"] = True
    for key in body:
        if key not in ECHOED and key not in _MAPPED:
            out.omitted.append(key)
    return out


_MAPPED = frozenset(
    {
        "max_output_tokens",
        "temperature",
        "top_p",
        "user",
        "text",
        "reasoning",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "background",
        "top_logprobs",
        "max_tool_calls",
    }
)


# Canonical chat fields as the Responses request names them (longest first).
_CLIENT_PARAMS = (
    ("response_format.json_schema.schema", "text.format.schema"),
    ("response_format", "text.format"),
    ("reasoning_effort", "reasoning.effort"),
    ("max_completion_tokens", "max_output_tokens"),
    ("messages", "input"),
)


def client_param(param: str) -> str:
    """A chat field an adapter refused, named as the client sent it."""
    for chat, ours in _CLIENT_PARAMS:
        if param == chat or param.startswith(chat + "."):
            return ours + param[len(chat) :]
        if param.startswith(chat + "["):
            return ours
    return param


def input_items(value: Any) -> list[dict[str, Any]]:
    """`input` as a list of items (a string is one user message)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise _invalid("input", "expected a string or a list of items")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise _invalid(f"input[{i}]", "expected an object")
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
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ("user", "assistant", "system", "developer"):
                raise _invalid(f"{where}.role", f"unknown role {role!r}")
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
                    "id": _required(item, "call_id", where),
                    "type": "function",
                    "function": {"name": name, "arguments": item.get("arguments", "")},
                }
            )
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = _joined(_content(output, f"{where}.output"))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _required(item, "call_id", where),
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
            raise _invalid(f"{where}.type", "item_reference is not supported")
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


def _required(item: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(item.get(key), str):
        raise _invalid(f"{where}.{key}", "is required")
    return item[key]


def _content(value: Any, where: str) -> str | list[dict[str, Any]]:
    """A message's content -> chat content (text parts and images)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise _invalid(where, "expected a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise _invalid(
                    f"{where}[{i}].image_url", "is required (file_id is not)"
                )
            image: dict[str, Any] = {"url": url}
            if part.get("detail") not in (None, "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _invalid(f"{where}[{i}].type", f"part type {kind!r} is not supported")
    return parts


def _joined(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content)


def _parameters(body: dict[str, Any], chat: dict[str, Any], omitted: list[str]) -> None:
    for src, dst in (
        ("max_output_tokens", "max_completion_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("user", "user"),
    ):
        if body.get(src) is not None:
            chat[dst] = body[src]
    reasoning = body.get("reasoning") or {}
    if not isinstance(reasoning, dict):
        raise _invalid("reasoning", "expected an object")
    if reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    fmt = (body.get("text") or {}).get("format")
    if fmt:
        kind = fmt.get("type")
        if kind == "json_schema":
            if not isinstance(fmt.get("schema"), dict):
                raise _invalid("text.format.schema", "is required")
            spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
            for key in ("strict", "description"):
                if fmt.get(key) is not None:
                    spec[key] = fmt[key]
            chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif kind == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise _invalid("text.format.type", f"unknown format {kind!r}")
    if body.get("background"):
        omitted.append("background")
    for key in ("top_logprobs", "max_tool_calls"):
        if body.get(key) is not None:
            omitted.append(key)


def flat_name(namespace: str, name: str) -> str:
    """A namespaced function's name among the provider's flat functions."""
    return f"{namespace}__{name}"


def _function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    fn: dict[str, Any] = {"name": name}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            fn[key] = tool[key]
    fn.setdefault("parameters", {"type": "object", "properties": {}})
    return {"type": "function", "function": fn}


# OpenAI's hosted web search, under each of its names.
WEB_SEARCH = frozenset(
    {
        "web_search",
        "web_search_preview",
        "web_search_2025_08_26",
        "web_search_preview_2025_03_11",
    }
)


def _web_search(tool: dict[str, Any], out: Bridged) -> None:
    """A web_search tool -> chat's web_search_options (the provider's search)."""
    options: dict[str, Any] = {}
    where = tool.get("user_location") or {}
    location = {k: v for k, v in where.items() if k != "type" and v}
    if location:
        options["user_location"] = {"type": "approximate", "approximate": location}
    if tool.get("search_context_size"):
        options["search_context_size"] = tool["search_context_size"]
    if tool.get("filters"):
        out.omitted.append(f"tools.{tool['type']}.filters")
    out.chat["web_search_options"] = options


def _tools(body: dict[str, Any], out: Bridged, search: bool = False) -> None:
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            tools.append(_function(tool, _required(tool, "name", f"tools[{i}]")))
        elif kind == "namespace":
            ns = _required(tool, "name", f"tools[{i}]")
            for inner in tool.get("tools") or []:
                if inner.get("type") != "function":
                    out.omitted.append(f"tools.namespace.{inner.get('type')}")
                    continue
                flat = flat_name(ns, inner.get("name", ""))
                out.namespaces[flat] = (ns, inner.get("name", ""))
                tools.append(_function(inner, flat))
        elif kind in WEB_SEARCH and search:
            _web_search(tool, out)
        elif kind in HOSTED_TOOLS:
            out.omitted.append(f"tools.{kind}")
        else:
            raise _invalid(f"tools[{i}].type", f"unknown tool type {kind!r}")
    chat = out.chat
    if tools:
        chat["tools"] = tools
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if tools:
            chat["tool_choice"] = choice
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "function" and tools:
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out.omitted.append(f"tool_choice.{kind}")


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
    them: without our ids and statuses, and without reasoning items (their
    encrypted_content is ours or another provider's, not readable there)."""
    out = []
    for item in items:
        if item.get("type") == "reasoning":
            continue
        out.append({k: v for k, v in item.items() if k not in ("id", "status")})
    return out
