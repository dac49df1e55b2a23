"""Responses API request -> canonical chat request, for a bridged model.

Pure. Every field either maps, is echoed back on the Response only
(metadata, store, include, ...), or is named in the `omitted` list the view
turns into an `x-crabllm-omitted` header, a log line and a metric (or a 400
when the config asks for strictness). Nothing is dropped without a trace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crabllm_sync.formats.responses.items import (
    flat_name,
    input_items,
    invalid,
    obj,
    required,
    to_messages,
)

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


@dataclass
class Bridged:
    """The canonical chat request and what of the Responses request it left out."""

    chat: dict[str, Any]
    omitted: list[str] = field(default_factory=list)
    # flattened function name -> (namespace, name), to map calls back
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)
    # names of custom (freeform) tools, sent as functions of one string `input`
    custom: set[str] = field(default_factory=set)


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
            raise invalid("instructions", "expected a string")
        messages.append({"role": "system", "content": instructions})
    items = list(history or []) + input_items(body.get("input"))
    messages += to_messages(items, out.omitted)
    if not messages:
        raise invalid("input", "is required")
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
        raise invalid("reasoning", "expected an object")
    if reasoning.get("effort") is not None:
        if not isinstance(reasoning["effort"], str):
            raise invalid("reasoning.effort", "expected a string")
        chat["reasoning_effort"] = reasoning["effort"]
    fmt = obj(obj(body.get("text"), "text").get("format"), "text.format")
    if fmt:
        kind = str(fmt.get("type"))
        if kind == "json_schema":
            if not isinstance(fmt.get("schema"), dict):
                raise invalid("text.format.schema", "is required")
            spec = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
            for key in ("strict", "description"):
                if fmt.get(key) is not None:
                    spec[key] = fmt[key]
            chat["response_format"] = {"type": "json_schema", "json_schema": spec}
        elif kind == "json_object":
            chat["response_format"] = {"type": "json_object"}
        elif kind != "text":
            raise invalid("text.format.type", f"unknown format {kind!r}")
    if body.get("background"):
        omitted.append("background")
    for key in ("top_logprobs", "max_tool_calls"):
        if body.get(key) is not None:
            omitted.append(key)


def custom_function(tool: dict[str, Any], name: str) -> dict[str, Any]:
    """A custom tool (freeform text input) as a function of one string,
    `input`; its grammar, if any, is told in the description."""
    about = tool.get("description") or ""
    fmt = obj(tool.get("format"), f"tools.{name}.format")
    if fmt.get("type") == "grammar":
        about += (
            f"\n\nThe input must follow this {fmt.get('syntax', '')} grammar:\n"
            f"{fmt.get('definition', '')}"
        )
    schema = {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "the tool's input"}},
        "required": ["input"],
    }
    return {
        "type": "function",
        "function": {"name": name, "description": about.strip(), "parameters": schema},
    }


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
    where = obj(tool.get("user_location"), "tools.web_search.user_location")
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
        kind = str(obj(tool, f"tools[{i}]").get("type"))
        if kind == "function":
            tools.append(_function(tool, required(tool, "name", f"tools[{i}]")))
        elif kind == "custom":
            name = required(tool, "name", f"tools[{i}]")
            out.custom.add(name)
            tools.append(custom_function(tool, name))
        elif kind == "namespace":
            ns = required(tool, "name", f"tools[{i}]")
            inner_tools = tool.get("tools") or []
            if not isinstance(inner_tools, list):
                raise invalid(f"tools[{i}].tools", "expected a list of tools")
            for j, inner in enumerate(inner_tools):
                inner = obj(inner, f"tools[{i}].tools[{j}]")
                inner_kind = str(inner.get("type"))
                if inner_kind not in ("function", "custom"):
                    out.omitted.append(f"tools.namespace.{inner_kind}")
                    continue
                flat = flat_name(ns, inner.get("name", ""))
                out.namespaces[flat] = (ns, inner.get("name", ""))
                if inner_kind == "custom":
                    out.custom.add(flat)
                    tools.append(custom_function(inner, flat))
                else:
                    tools.append(_function(inner, flat))
        elif kind in WEB_SEARCH and search:
            _web_search(tool, out)
        elif kind in HOSTED_TOOLS:
            out.omitted.append(f"tools.{kind}")
        else:
            raise invalid(f"tools[{i}].type", f"unknown tool type {kind!r}")
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
    kind = str(choice.get("type")) if isinstance(choice, dict) else None
    if kind in ("function", "custom") and tools:
        name = required(choice, "name", "tool_choice")
        chat["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out.omitted.append(f"tool_choice.{kind}")
