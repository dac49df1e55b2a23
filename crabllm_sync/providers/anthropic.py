"""Anthropic Messages API: native calls (used as-is by /v1/messages) and the
OpenAI chat <-> Messages translation behind /v1/chat/completions.

Translation is pure (dicts in, dicts out); the only I/O is the transport call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
import requests

from crabllm_sync import sse
from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment
from crabllm_sync.wire import completions as oai
from crabllm_sync.wire.anthropic import usage_to_openai

BASE_URL = "https://api.anthropic.com/v1"
API_VERSION = "2023-06-01"

# Client headers forwarded on native calls (beta features and the like).
PASSTHROUGH_HEADERS = ("anthropic-beta",)


def native_headers(
    dep: Deployment, client_headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "anthropic-version": API_VERSION,
    }
    if dep.api_key:
        headers["x-api-key"] = dep.api_key
    for name in PASSTHROUGH_HEADERS:
        value = (client_headers or {}).get(name)
        if value:
            headers[name] = value
    return headers


# -- Native pass-through ----------------------------------------------------


def messages(
    dep: Deployment,
    session: requests.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages with an Anthropic body; the Anthropic answer."""
    return http.post_json(
        session,
        f"{dep.base_url}/messages",
        body,
        headers=native_headers(dep, client_headers),
        timeout=dep.timeout,
        provider=dep.provider,
    )


def messages_stream(
    dep: Deployment,
    session: requests.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> Iterator[sse.Event]:
    """POST {base}/messages with stream=true; the native SSE events as they come."""
    headers = native_headers(dep, client_headers)
    headers["accept"] = "text/event-stream"
    lines = http.post_stream(
        session,
        f"{dep.base_url}/messages",
        body,
        headers=headers,
        timeout=dep.timeout,
        provider=dep.provider,
    )
    return _events(lines)


def count_tokens(
    dep: Deployment,
    session: requests.Session,
    body: dict[str, Any],
    client_headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST {base}/messages/count_tokens."""
    return http.post_json(
        session,
        f"{dep.base_url}/messages/count_tokens",
        body,
        headers=native_headers(dep, client_headers),
        timeout=dep.timeout,
        provider=dep.provider,
    )


def _events(lines: Iterator[bytes]) -> Iterator[sse.Event]:
    try:
        yield from sse.parse(lines)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


# -- Wire helpers (private) --------------------------------------------------

# Anthropic requires max_tokens; OpenAI does not. Used when the client sends none.
DEFAULT_MAX_TOKENS = 4096
# reasoning_effort -> thinking.budget_tokens (1024 is the API's minimum).
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# Anthropic error types (in a stream's error event) -> the HTTP status they mean.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

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
    "web_search_options": lambda v: v is None,
    "prompt_cache_key": lambda v: v is None,
    "verbosity": lambda v: v is None,
}

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
    }
)
_EMPTY_MESSAGE_FIELDS = ("refusal", "audio", "function_call", "annotations", "name")


def _refuse(provider: str, param: str, why: str = "") -> UnsupportedError:
    detail = f": {why}" if why else ""
    return UnsupportedError(
        f"'{param}' is not supported by provider '{provider}' (anthropic){detail}",
        param=param,
    )


def _invalid(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {message}", param=param)


def _check_params(body: Mapping[str, Any], provider: str) -> None:
    """Refuse every field that would otherwise be dropped on the way."""
    for key, value in body.items():
        if key in _HANDLED:
            continue
        neutral = _NEUTRAL.get(key)
        if neutral is not None and neutral(value):
            continue
        raise _refuse(provider, key)


def _system_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content or []):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise _invalid(f"{where}.content.{j}", "system messages take text only")
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
        raise _invalid(f"{where}.image_url.url", "is required")
    if url.startswith("data:"):
        source = _data_url_source(url, f"{where}.image_url.url")
    elif url.startswith(("http://", "https://")):
        source = {"type": "url", "url": url}
    else:
        raise _invalid(f"{where}.image_url.url", "must be a data: or http(s) URL")
    block: dict[str, Any] = {"type": "image", "source": source}
    if part.get("cache_control"):
        block["cache_control"] = part["cache_control"]
    return block


def _data_url_source(url: str, where: str) -> dict[str, Any]:
    head, sep, data = url.partition(",")
    media_type, _, encoding = head[len("data:") :].partition(";")
    if not sep or encoding != "base64" or not media_type:
        raise _invalid(where, "a data URL must be data:<media type>;base64,<data>")
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
            raise _invalid(f"{where}.thinking_blocks", "unknown thinking block")
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
            raise _invalid(
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
        raise _invalid(f"{where}.tool_call_id", "is required")
    content = msg.get("content")
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif content:
        result["content"] = _user_blocks(content, where, provider)
    return result


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
            system.extend(_system_blocks(msg.get("content"), where))
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
        raise _invalid("reasoning_effort", "send either reasoning_effort or thinking")
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
        raise _invalid(
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
            raise _invalid("response_format.json_schema.schema", "is required")
        return {"format": {"type": "json_schema", "schema": schema}}
    raise _refuse(
        provider, "response_format", f"type '{kind}' (use json_schema with a schema)"
    )


def _stream_error(event: Mapping[str, Any], provider: str) -> UpstreamError:
    err = event.get("error") or {}
    kind = err.get("type") or "api_error"
    message = err.get("message") or kind
    return UpstreamError(
        f"{provider}: {message}",
        provider=provider,
        upstream_status=_ERROR_STATUS.get(kind, 500),
    )


# -- Translation ---------------------------------------------------------------


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
        raise _invalid("temperature", "must be between 0 and 1 for anthropic models")
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
        raise _invalid("tool_choice", "needs tools")
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


def map_stop_reason(reason: str | None) -> str | None:
    """Anthropic stop_reason -> OpenAI finish_reason."""
    if reason is None:
        return None
    return _STOP_REASONS.get(reason, "stop")


# Anthropic usage -> OpenAI usage lives with the Messages wire models, which
# /v1/messages pass-through uses too: one function for both paths.
map_usage = usage_to_openai


def translate_response(
    native: Mapping[str, Any], *, created: int = 0
) -> dict[str, Any]:
    """A Messages API response -> an OpenAI chat.completion."""
    texts: list[str] = []
    reasoning: list[str] = []
    thinking_blocks: list[dict[str, Any]] = []
    tool_calls: list[dict[str, Any]] = []
    for block in native.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
            thinking_blocks.append(
                {
                    "type": "thinking",
                    "thinking": block.get("thinking", ""),
                    "signature": block.get("signature", ""),
                }
            )
        elif kind == "redacted_thinking":
            thinking_blocks.append({"type": "redacted_thinking", "data": block["data"]})
        elif kind == "tool_use":
            # Arguments spaced and unescaped, as Anthropic streams them.
            args = json.dumps(block.get("input") or {}, ensure_ascii=False)
            tool_calls.append(oai.tool_call(block["id"], block["name"], args))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        message["tool_calls"] = tool_calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if thinking_blocks:
        message["thinking_blocks"] = thinking_blocks
    finish = map_stop_reason(native.get("stop_reason"))
    return oai.completion(
        native.get("id", ""),
        native.get("model", ""),
        created,
        [oai.choice(message, finish)],
        map_usage(native.get("usage")),
    )


class ChunkTranslator:
    """Messages stream events -> OpenAI chunks, one event at a time.

    Tool calls keep OpenAI's incremental form: the first chunk of a call has its
    index, id and name; the following ones only argument pieces.
    """

    def __init__(
        self,
        *,
        created: int = 0,
        include_usage: bool = False,
        provider: str = "anthropic",
    ) -> None:
        self.created = created
        self.include_usage = include_usage
        self.provider = provider
        self.id = ""
        self.model = ""
        self.usage: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.done = False
        self._blocks: dict[int, dict[str, Any]] = {}  # native index -> state
        self._tool_count = 0
        self._has_started = False

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The chunks one native event becomes; an error event raises."""
        chunks = self._feed(event)
        if chunks and not self._has_started:
            # The role chunk waits for the first real one: an overloaded error
            # right after message_start then fails the attempt before the
            # client saw a byte, so it can still be retried.
            self._has_started = True
            chunks.insert(0, self._delta({"role": "assistant", "content": ""}))
        return chunks

    def _feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            msg = event.get("message") or {}
            self.id = msg.get("id", "")
            self.model = msg.get("model", "")
            self.usage.update(msg.get("usage") or {})
            return []
        if kind == "content_block_start":
            return self._start(event.get("index", 0), event.get("content_block") or {})
        if kind == "content_block_delta":
            return self._block_delta(event.get("index", 0), event.get("delta") or {})
        if kind == "content_block_stop":
            return self._stop(event.get("index", 0))
        if kind == "message_delta":
            # Usage in message_delta is cumulative: it replaces what we had.
            self.usage.update(
                {k: v for k, v in (event.get("usage") or {}).items() if v is not None}
            )
            reason = (event.get("delta") or {}).get("stop_reason")
            if reason is None:
                return []
            self.finish_reason = map_stop_reason(reason)
            return [self._delta({}, self.finish_reason)]
        if kind == "message_stop":
            self.done = True
            if not self.include_usage:
                return []
            usage = map_usage(self.usage)
            return [oai.usage_chunk(self.id, self.model, self.created, usage)]
        if kind == "error":
            raise _stream_error(event, self.provider)
        return []  # ping, and event types added after this was written

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> dict:
        return oai.chunk(self.id, self.model, self.created, delta, finish)

    def _start(self, index: int, block: Mapping[str, Any]) -> list[dict[str, Any]]:
        kind = block.get("type")
        state: dict[str, Any] = {"type": kind}
        self._blocks[index] = state
        if kind == "text":
            return (
                [self._delta({"content": block["text"]})] if block.get("text") else []
            )
        if kind == "thinking":
            state["thinking"] = [block.get("thinking", "")]
            state["signature"] = block.get("signature", "")
            text = block.get("thinking")
            return [self._delta({"reasoning_content": text})] if text else []
        if kind == "redacted_thinking":
            tb = {"type": "redacted_thinking", "data": block.get("data", "")}
            return [self._delta({"thinking_blocks": [tb]})]
        if kind == "tool_use":
            state["tool_index"] = self._tool_count
            self._tool_count += 1
            # Anthropic starts with input {} and streams it; take it if it came whole.
            given = block.get("input")
            args = json.dumps(given, ensure_ascii=False) if given else ""
            state["has_arguments"] = bool(args)
            call = oai.tool_call_start(
                state["tool_index"], block.get("id"), block.get("name"), args
            )
            return [self._delta({"tool_calls": [call]})]
        return []

    def _block_delta(
        self, index: int, delta: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        state = self._blocks.get(index, {})
        kind = delta.get("type")
        if kind == "text_delta":
            text = delta.get("text", "")
            return [self._delta({"content": text})] if text else []
        if kind == "input_json_delta" and "tool_index" in state:
            piece = delta.get("partial_json", "")
            if not piece:
                return []
            state["has_arguments"] = True
            call = oai.tool_call_arguments(state["tool_index"], piece)
            return [self._delta({"tool_calls": [call]})]
        if kind == "thinking_delta":
            text = delta.get("thinking", "")
            state.setdefault("thinking", []).append(text)
            return [self._delta({"reasoning_content": text})] if text else []
        if kind == "signature_delta":
            state["signature"] = state.get("signature", "") + delta.get("signature", "")
        return []

    def _stop(self, index: int) -> list[dict[str, Any]]:
        state = self._blocks.get(index, {})
        if state.get("type") == "tool_use" and not state.get("has_arguments"):
            # A call without input streams no JSON at all; OpenAI clients parse
            # the arguments, so they get the empty object the Message would hold.
            call = oai.tool_call_arguments(state["tool_index"], "{}")
            return [self._delta({"tool_calls": [call]})]
        if state.get("type") != "thinking":
            return []
        # The whole signed block, once, so a client can echo it next turn.
        tb = {
            "type": "thinking",
            "thinking": "".join(state.get("thinking", [])),
            "signature": state.get("signature", ""),
        }
        return [self._delta({"thinking_blocks": [tb]})]


# -- Public API ----------------------------------------------------------------


def chat(
    dep: Deployment, session: requests.Session, body: dict[str, Any]
) -> dict[str, Any]:
    """An OpenAI chat completion answered by the Messages API."""
    native = messages(dep, session, translate_request(body, dep))
    return translate_response(native, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: requests.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """OpenAI chunks translated from the Messages stream as events arrive."""
    native = {**translate_request(body, dep), "stream": True}
    translator = ChunkTranslator(
        created=int(time.time()),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        provider=dep.provider,
    )
    return _chunks(messages_stream(dep, session, native), translator, dep.provider)


def _chunks(
    events: Iterator[sse.Event], translator: ChunkTranslator, provider: str
) -> Iterator[dict[str, Any]]:
    try:
        for event in events:
            payload = sse.event_json(event, provider)
            if isinstance(payload, dict):
                yield from translator.feed(payload)
            if translator.done:
                # Read on to the end of the body so the connection returns to
                # the pool instead of being closed (as openai.read_chunks does).
                for _ in events:
                    pass
                return
        raise UpstreamError(
            f"{provider}: stream ended before message_stop",
            provider=provider,
            upstream_status=502,
        )
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
