"""OpenAI chat request -> Gemini generateContent body: tools, generation
config, thinking and the `google` extras. Pure (messages.py does the turns).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from crabllm_sync.errors import invalid_param
from crabllm_sync.providers.google.messages import _contents, _refuse
from crabllm_sync.providers.google.schema import clean_schema

# OpenAI parameters that translate_request reads (translated, checked, or
# accepted as identifiers only). Anything else is refused by name.
_KNOWN = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "top_k",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        "reasoning_effort",
        "logprobs",
        "top_logprobs",
        "logit_bias",
        "modalities",
        "store",
        "metadata",
        "service_tier",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "web_search_options",
        "google",
        "extra_body",
    }
)

# Gemini 2.x thinking budgets for OpenAI's effort levels (Google's own
# OpenAI-compatibility table); Gemini 3 takes the level by name.
_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}

_LEVELS = frozenset({"minimal", "low", "medium", "high"})

_GOOGLE_EXTRAS = {
    "thinking_config": "thinkingConfig",
    "cached_content": "cachedContent",
    "safety_settings": "safetySettings",
}


def _model_path(model: str) -> str:
    if model.startswith(("models/", "tunedModels/")):
        return quote(model, safe="/")
    return "models/" + quote(model, safe="")


def _declarations(body: dict[str, Any]) -> list[dict[str, Any]]:
    fns: list[tuple[str, dict[str, Any]]] = []
    for i, tool in enumerate(body.get("tools") or []):
        if tool.get("type", "function") != "function":
            raise _refuse(f"tools[{i}].type", f"tool type '{tool.get('type')}'")
        fns.append((f"tools[{i}].function", tool.get("function") or {}))
    for i, fn in enumerate(body.get("functions") or []):
        fns.append((f"functions[{i}]", fn))
    out = []
    for where, fn in fns:
        decl: dict[str, Any] = {"name": fn.get("name")}
        if fn.get("description"):
            decl["description"] = fn["description"]
        params = fn.get("parameters")
        if params:
            schema = clean_schema(params, where + ".parameters")
            # Gemini refuses an OBJECT with no properties: no parameters at all.
            if schema.get("properties"):
                decl["parameters"] = schema
        out.append(decl)
    return out


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice")
    if choice is None and body.get("function_call") is not None:
        legacy = body["function_call"]
        choice = legacy if isinstance(legacy, str) else {"function": legacy}
    if choice is None:
        return None
    modes = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
    if isinstance(choice, str):
        if choice not in modes:
            raise invalid_param("tool_choice", f"unknown value '{choice}'")
        return {"functionCallingConfig": {"mode": modes[choice]}}
    if choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") or {}
        names = [t.get("function", {}).get("name") for t in allowed.get("tools") or []]
        mode = "ANY" if allowed.get("mode") == "required" else "VALIDATED"
        return {"functionCallingConfig": {"mode": mode, "allowedFunctionNames": names}}
    if choice.get("type", "function") != "function":
        raise _refuse("tool_choice.type", f"'{choice.get('type')}'")
    name = (choice.get("function") or {}).get("name")
    if not name:
        raise invalid_param("tool_choice.function.name", "is required")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def _thinking(effort: Any, model: str) -> dict[str, Any]:
    if effort not in _BUDGETS:
        raise _refuse("reasoning_effort", f"value '{effort}' has no Gemini equivalent")
    if "gemini-3" in model:
        if effort not in _LEVELS:
            raise _refuse("reasoning_effort", f"'{effort}': Gemini 3 always thinks")
        return {"thinkingLevel": effort, "includeThoughts": True}
    return {"thinkingBudget": _BUDGETS[effort], "includeThoughts": effort != "none"}


def _generation_config(body: dict[str, Any]) -> dict[str, Any]:
    cfg: dict[str, Any] = {}
    simple = {
        "temperature": "temperature",
        "top_p": "topP",
        "top_k": "topK",
        "seed": "seed",
        "presence_penalty": "presencePenalty",
        "frequency_penalty": "frequencyPenalty",
        "n": "candidateCount",
    }
    for ours, theirs in simple.items():
        if body.get(ours) is not None:
            cfg[theirs] = body[ours]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None:
        cfg["maxOutputTokens"] = limit
    stop = body.get("stop")
    if stop:
        cfg["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format")
    if fmt:
        kind = fmt.get("type")
        if kind == "json_object":
            cfg["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            spec = fmt.get("json_schema") or {}
            cfg["responseMimeType"] = "application/json"
            if spec.get("schema"):
                cfg["responseSchema"] = clean_schema(
                    spec["schema"], "response_format.json_schema.schema"
                )
        elif kind != "text":
            raise _refuse("response_format.type", f"'{kind}'")
    if body.get("reasoning_effort") is not None:
        cfg["thinkingConfig"] = _thinking(
            body["reasoning_effort"], body.get("model", "")
        )
    return cfg


def _check_params(body: dict[str, Any]) -> None:
    """Refuse, by name, every parameter Gemini cannot honour."""
    for key, value in body.items():
        if value is None:
            continue
        if key not in _KNOWN:
            raise _refuse(key)
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        raise _refuse("logprobs" if body.get("logprobs") else "top_logprobs")
    if body.get("logit_bias"):
        raise _refuse("logit_bias", "Gemini has no token biasing")
    if body.get("parallel_tool_calls") is False:
        raise _refuse(
            "parallel_tool_calls", "false cannot be enforced: Gemini may call several"
        )
    if body.get("store"):
        raise _refuse("store", "Gemini does not store completions")
    if body.get("service_tier") not in (None, "auto", "default"):
        raise _refuse("service_tier", f"'{body['service_tier']}'")
    modalities = body.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        raise _refuse("modalities", "only ['text'] is served")
    extra = body.get("extra_body")
    if extra is not None:
        if not isinstance(extra, dict):
            raise invalid_param("extra_body", "must be an object")
        for key in extra:
            if key != "google":
                raise _refuse(f"extra_body.{key}")
    prefix = "google" if body.get("google") is not None else "extra_body.google"
    google = _google_options(body)
    if not isinstance(google, dict):
        raise invalid_param(prefix, "must be an object")
    for key in google:
        if key not in _GOOGLE_EXTRAS:
            raise _refuse(f"{prefix}.{key}")


def _google_options(body: dict[str, Any]) -> Any:
    """Gemini extras: `google`, or `extra_body.google` as Google's own OpenAI
    layer documents it (its Python example nests extra_body in extra_body)."""
    if body.get("google") is not None:
        return body["google"]
    return (body.get("extra_body") or {}).get("google") or {}


def _snake_to_camel(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): _snake_to_camel(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_snake_to_camel(v) for v in value]
    return value


def translate_request(body: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request -> a Gemini generateContent body."""
    _check_params(body)
    system, contents = _contents(body.get("messages") or [])
    native: dict[str, Any] = {"contents": contents}
    if system:
        native["systemInstruction"] = {"parts": system}
    decls = _declarations(body)
    if decls:
        native["tools"] = [{"functionDeclarations": decls}]
    if body.get("web_search_options") is not None:
        # Grounding with Google Search: Gemini's own search tool.
        native.setdefault("tools", []).append({"googleSearch": {}})
    tool_config = _tool_config(body)
    if tool_config is not None:
        native["toolConfig"] = tool_config
    cfg = _generation_config(body)
    google = _snake_to_camel(_google_options(body))
    if "thinkingConfig" in google:
        cfg["thinkingConfig"] = google.pop("thinkingConfig")
    if cfg:
        native["generationConfig"] = cfg
    native.update(google)
    return native
