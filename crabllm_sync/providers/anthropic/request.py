"""OpenAI chat request -> Messages API request: parameters, tools, thinking.

Pure; refuses by name every field that cannot map (messages.py does the turns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from crabllm_sync.errors import invalid_param
from crabllm_sync.providers.anthropic.messages import (
    _refuse,
    _translate_messages,
)
from crabllm_sync.routing import Deployment

# Anthropic requires max_tokens; OpenAI does not. Used when the client sends none.
DEFAULT_MAX_TOKENS = 4096

# reasoning_effort -> thinking.budget_tokens (1024 is the API's minimum).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}

# Top-level OpenAI fields handled by translate_request (anything else is refused).
_HANDLED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "safety_identifier",
        "reasoning_effort",
        "service_tier",
        "web_search_options",
        # Anthropic-native extras a client may send through extra_body.
        "thinking",
        "top_k",
    }
)

# Fields accepted when they ask for nothing: value -> no-op.
_NEUTRAL: dict[str, Callable[[Any], bool]] = {
    "n": lambda v: v in (None, 1),
    "logprobs": lambda v: not v,
    "top_logprobs": lambda v: v is None,
    "seed": lambda v: v is None,
    "frequency_penalty": lambda v: not v,
    "presence_penalty": lambda v: not v,
    "logit_bias": lambda v: not v,
    "store": lambda v: not v,
    "metadata": lambda v: not v,
    "modalities": lambda v: v in (None, ["text"]),
    "audio": lambda v: v is None,
    "prediction": lambda v: v is None,
    "functions": lambda v: not v,
    "function_call": lambda v: v is None,
    "prompt_cache_key": lambda v: v is None,
    "verbosity": lambda v: v is None,
}


def _check_params(body: Mapping[str, Any], provider: str) -> None:
    """Refuse every field that would otherwise be dropped on the way."""
    for key, value in body.items():
        if key in _HANDLED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is not None and neutral(value):
            continue
        raise _refuse(provider, key)


def _tools(tools: list[Mapping[str, Any]], provider: str) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise _refuse(provider, f"tools.{i}.type", f"tool type '{tool['type']}'")
        fn = tool.get("function") or {}
        native: dict[str, Any] = {
            "name": fn.get("name"),
            "input_schema": fn.get("parameters")
            or {"type": "object", "properties": {}},
        }
        if fn.get("description"):
            native["description"] = fn["description"]
        if fn.get("strict"):
            native["strict"] = True
        if tool.get("cache_control"):
            native["cache_control"] = tool["cache_control"]
        out.append(native)
    return out


def _tool_choice(choice: Any, provider: str) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "none":
        return {"type": "none"}
    if choice == "required":
        return {"type": "any"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    raise _refuse(provider, "tool_choice", f"value {choice!r}")


def _max_tokens(body: Mapping[str, Any]) -> int | None:
    value = body.get("max_completion_tokens")
    if value is None:
        value = body.get("max_tokens")
    return value


def _thinking(
    body: Mapping[str, Any], max_tokens: int | None, provider: str
) -> tuple[dict[str, Any] | None, int]:
    """(thinking config or None, max_tokens to send)."""
    effort = body.get("reasoning_effort")
    native = body.get("thinking")
    if effort is not None and native is not None:
        raise invalid_param(
            "reasoning_effort", "send either reasoning_effort or thinking"
        )
    if native is not None:
        budget = native.get("budget_tokens") if isinstance(native, dict) else None
        room = (budget or 0) + DEFAULT_MAX_TOKENS
        return native, max_tokens or room
    if effort is None or effort == "none":
        return None, max_tokens or DEFAULT_MAX_TOKENS
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise _refuse(provider, "reasoning_effort", f"value {effort!r}")
    if max_tokens is None:
        # Thinking counts against max_tokens: leave the answer its usual room.
        return {"type": "enabled", "budget_tokens": budget}, budget + DEFAULT_MAX_TOKENS
    budget = min(budget, max_tokens - 1)
    if budget < THINKING_BUDGETS["minimal"]:
        raise invalid_param(
            "max_completion_tokens",
            f"reasoning_effort needs more than {THINKING_BUDGETS['minimal']} tokens",
        )
    return {"type": "enabled", "budget_tokens": budget}, max_tokens


def _response_format(fmt: Any, provider: str) -> dict[str, Any] | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise invalid_param("response_format.json_schema.schema", "is required")
        return {"format": {"type": "json_schema", "schema": schema}}
    raise _refuse(
        provider, "response_format", f"type '{kind}' (use json_schema with a schema)"
    )


# OpenAI's approximate user location fields Anthropic's web search takes too.
_LOCATION = ("city", "region", "country", "timezone")


def _web_search(options: Any) -> dict[str, Any]:
    """web_search_options -> Anthropic's server-side web search tool.
    search_context_size has no equivalent and asks for nothing that changes
    the answer's shape; the user's approximate location maps as it is."""
    tool: dict[str, Any] = {"type": "web_search_20250305", "name": "web_search"}
    if not isinstance(options, dict):
        raise invalid_param("web_search_options", "expected an object")
    where = (options.get("user_location") or {}).get("approximate") or {}
    location = {k: where[k] for k in _LOCATION if where.get(k)}
    if location:
        tool["user_location"] = {"type": "approximate", **location}
    return tool


def translate_request(
    body: Mapping[str, Any], dep: Deployment | None = None
) -> dict[str, Any]:
    """An OpenAI chat request -> a Messages API request; refuses what cannot map."""
    provider = dep.provider if dep is not None else "anthropic"
    _check_params(body, provider)
    system, messages = _translate_messages(list(body.get("messages") or []), provider)
    thinking, max_tokens = _thinking(body, _max_tokens(body), provider)
    native: dict[str, Any] = {
        "model": dep.model if dep is not None else body.get("model"),
        "max_tokens": max_tokens,
        "messages": messages,
    }
    if system:
        plain = len(system) == 1 and set(system[0]) == {"type", "text"}
        native["system"] = system[0]["text"] if plain else system
    if thinking is not None:
        native["thinking"] = thinking
    for key in ("temperature", "top_p", "top_k"):
        if body.get(key) is not None:
            native[key] = body[key]
    if native.get("temperature", 0) > 1:
        raise invalid_param(
            "temperature", "must be between 0 and 1 for anthropic models"
        )
    stop = body.get("stop")
    if stop:
        native["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = body.get("user") or body.get("safety_identifier")
    if user:
        native["metadata"] = {"user_id": user}
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if tools:
        native["tools"] = _tools(tools, provider)
        tc = _tool_choice(choice, provider) if choice is not None else None
        if body.get("parallel_tool_calls") is False:
            tc = tc or {"type": "auto"}
            if tc["type"] != "none":
                tc["disable_parallel_tool_use"] = True
        if tc is not None:
            native["tool_choice"] = tc
    elif choice not in (None, "auto", "none"):
        raise invalid_param("tool_choice", "needs tools")
    search = body.get("web_search_options")
    if search is not None:
        native.setdefault("tools", []).append(_web_search(search))
    if body.get("response_format") is not None:
        output = _response_format(body["response_format"], provider)
        if output is not None:
            native["output_config"] = output
    tier = body.get("service_tier")
    if tier is not None:
        if tier not in ("auto", "default"):
            raise _refuse(provider, "service_tier", f"value {tier!r}")
        native["service_tier"] = "auto" if tier == "auto" else "standard_only"
    if body.get("stream"):
        native["stream"] = True
    return native
