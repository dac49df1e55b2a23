"""OpenAI chat request -> client.converse() keyword arguments: parameters,
tools, structured output, metadata, thinking. Pure (messages.py does the turns).
"""

from __future__ import annotations

import json
import re
from typing import Any

from crabllm_sync.errors import invalid_param
from crabllm_sync.providers.bedrock.messages import (
    _cache_point,
    _messages,
    _refuse,
)

# reasoning_effort -> Claude's extended-thinking budget (tokens).
THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}

# maxTokens must exceed the thinking budget; room for the answer when unset.
THINKING_ANSWER_TOKENS = 4096

# Bedrock-native request fields a client may send as-is (openai's extra_body).
NATIVE_FIELDS = (
    "additionalModelRequestFields",
    "additionalModelResponseFieldPaths",
    "guardrailConfig",
    "performanceConfig",
    "promptVariables",
    "requestMetadata",
)

_METADATA_VALUE = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,.-]{0,256}$")


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _tool_config(
    body: dict[str, Any], turns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise invalid_param("tool_choice", "tool_choice needs tools")
        return None
    specs = []
    for k, tool in enumerate(tools):
        if tool.get("type", "function") != "function":
            raise _refuse(f"tools[{k}].type", f"tool type {tool.get('type')!r}")
        fn = tool.get("function") or {}
        spec: dict[str, Any] = {
            "name": fn.get("name"),
            "inputSchema": {
                "json": fn.get("parameters") or {"type": "object", "properties": {}}
            },
        }
        if fn.get("description"):
            spec["description"] = fn["description"]
        if fn.get("strict") is not None:
            spec["strict"] = bool(fn["strict"])
        specs.append({"toolSpec": spec})
        point = _cache_point(tool.get("cache_control"), f"tools[{k}].cache_control")
        if point is not None:
            specs.append(point)
    config: dict[str, Any] = {"tools": specs}
    if choice in (None, "auto"):
        # Auto is Converse's default; sending it explicitly is refused by
        # models without toolChoice support (Llama, Cohere, ...).
        pass
    elif choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "none":
        # Converse has no "none": leaving the tools out does the same, unless
        # the history holds tool blocks, which Converse refuses without tools.
        if _has_tool_blocks(turns):
            raise _refuse(
                "tool_choice",
                "'none' while the conversation holds tool calls (Converse needs "
                "the tools then and cannot forbid calling them); use 'auto'",
            )
        return None
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        config["toolChoice"] = {"tool": {"name": name}}
    else:
        raise _refuse("tool_choice", f"value {choice!r}")
    return config


def _is_claude(model: str) -> bool:
    return "anthropic." in model or "claude" in model.lower()


def _inference_config(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        config["maxTokens"] = limit
    temperature = body.get("temperature")
    if temperature is not None:
        if not 0 <= temperature <= 1:
            raise _refuse("temperature", "Converse takes values from 0 to 1")
        config["temperature"] = temperature
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    return config


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_schema":
        spec = fmt.get("json_schema") or {}
        schema: dict[str, Any] = {"schema": json.dumps(spec.get("schema") or {})}
        if spec.get("name"):
            schema["name"] = spec["name"]
        if spec.get("description"):
            schema["description"] = spec["description"]
        return {
            "textFormat": {
                "type": "json_schema",
                "structure": {"jsonSchema": schema},
            }
        }
    raise _refuse(
        "response_format", f"type {kind!r}; use json_schema (structured output)"
    )


def _metadata(body: dict[str, Any]) -> dict[str, str]:
    """OpenAI `metadata` and `user` -> Converse requestMetadata (log filters)."""
    out: dict[str, str] = {}
    for key, value in (body.get("metadata") or {}).items():
        out[str(key)] = str(value)
    if body.get("user") is not None:
        out["user"] = str(body["user"])
    for key, value in out.items():
        if not _METADATA_VALUE.match(value) or not _METADATA_VALUE.match(key):
            param = "user" if key == "user" else f"metadata.{key}"
            raise invalid_param(
                param,
                "Bedrock request metadata allows letters, digits, spaces "
                "and :_@$#=/+,.- (up to 256 characters)",
            )
    return out


# Parameters that mean nothing to translate at these values.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "seed": (None,),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logit_bias": (None,),
    "store": (None, False),
    "parallel_tool_calls": (None, True),
    "prediction": (None,),
    "audio": (None,),
    "web_search_options": (None,),
    "functions": (None,),
    "function_call": (None,),
    "verbosity": (None,),
    "prompt_cache_key": (None,),
    "safety_identifier": (None,),
}

_TRANSLATED = frozenset(
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
        "response_format",
        "user",
        "metadata",
        "reasoning_effort",
        "service_tier",
        "modalities",
        *NATIVE_FIELDS,
    }
)


def _check_params(body: dict[str, Any]) -> None:
    """Refuse what Converse cannot do, naming the parameter (no silent drops)."""
    for key, value in body.items():
        if key in _TRANSLATED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is None:
            raise _refuse(key)
        if value in neutral or (key == "logit_bias" and value == {}):
            continue
        raise _refuse(key, f"value {value!r}")
    modalities = body.get("modalities")
    if modalities not in (None, ["text"]):
        raise _refuse("modalities", "only text output")
    tier = body.get("service_tier")
    if tier not in (None, "auto", "default", "flex", "priority"):
        raise _refuse("service_tier", f"value {tier!r}")


def _thinking(body: dict[str, Any], kwargs: dict[str, Any]) -> None:
    effort = body.get("reasoning_effort")
    if effort in (None, "none"):
        return
    budget = THINKING_BUDGETS.get(effort)
    if budget is None:
        raise _refuse("reasoning_effort", f"value {effort!r}")
    if not _is_claude(str(body.get("model", ""))):
        raise _refuse(
            "reasoning_effort",
            "only for Anthropic Claude models; pass the model's own reasoning "
            "fields in additionalModelRequestFields",
        )
    extra = kwargs.setdefault("additionalModelRequestFields", {})
    extra["thinking"] = {"type": "enabled", "budget_tokens": budget}
    inference = kwargs.setdefault("inferenceConfig", {})
    inference.setdefault("maxTokens", budget + THINKING_ANSWER_TOKENS)


def translate_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat body -> keyword arguments of client.converse()."""
    _check_params(body)
    system, turns = _messages(body.get("messages") or [])
    kwargs: dict[str, Any] = {"modelId": body["model"], "messages": turns}
    if system:
        kwargs["system"] = system
    inference = _inference_config(body)
    if inference:
        kwargs["inferenceConfig"] = inference
    tool_config = _tool_config(body, turns)
    if tool_config:
        kwargs["toolConfig"] = tool_config
    output = _response_format(body)
    if output:
        kwargs["outputConfig"] = output
    metadata = _metadata(body)
    if metadata:
        kwargs["requestMetadata"] = metadata
    tier = body.get("service_tier")
    if tier in ("default", "flex", "priority"):
        kwargs["serviceTier"] = {"type": tier}
    _thinking(body, kwargs)
    for name in NATIVE_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(kwargs.get(name), dict):
            kwargs[name] = {**kwargs[name], **value}
        else:
            kwargs[name] = value
    return kwargs
