"""Anthropic Messages API: request/response models and pure OpenAI translation.

to_chat() (Anthropic request -> OpenAI chat request), from_chat() (OpenAI chat
completion -> Anthropic message) and EventTranslator (OpenAI chunks -> Anthropic
stream events). No I/O, no clock, no randomness.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.wire import completions
from crabllm_sync.wire.openai import MAX_TOKENS


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- Request models (shape checks; the client's dict is what is forwarded) ----


class ContentBlock(_Open):
    type: str = Field(min_length=1)


class TextBlock(ContentBlock):
    text: str


class ImageBlock(ContentBlock):
    source: dict[str, Any]


class DocumentBlock(ContentBlock):
    source: dict[str, Any]
    title: str | None = None


class ToolUseBlock(ContentBlock):
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]


class ToolResultBlock(ContentBlock):
    tool_use_id: str = Field(min_length=1)
    content: str | list[ContentBlock] | None = None
    is_error: bool | None = None


# Checked before translation: their fields are what the translation reads.
_BLOCKS: dict[str, type[ContentBlock]] = {
    "text": TextBlock,
    "image": ImageBlock,
    "document": DocumentBlock,
    "tool_use": ToolUseBlock,
    "tool_result": ToolResultBlock,
}


class Message(_Open):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(_Open):
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Open):
    type: str = Field(min_length=1)  # auto | any | tool | none (native: any)
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class CountTokensRequest(_Open):
    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    system: str | list[ContentBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: int = Field(ge=1, le=MAX_TOKENS)
    stream: bool | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    metadata: dict[str, Any] | None = None


# -- Response models (the OpenAPI document is generated from these) ----------


class Usage(_Open):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageResponse(_Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: Usage


class CountTokensResponse(_Open):
    input_tokens: int


class StreamEvent(_Open):
    """One event of a streamed message; `type` repeats the SSE event name."""

    type: Literal[
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    ]
    index: int | None = None
    message: MessageResponse | None = None
    content_block: ContentBlock | None = None
    delta: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None


class ErrorDetail(_Open):
    type: str
    message: str


class ErrorResponse(_Open):
    type: Literal["error"]
    error: ErrorDetail


# -- Anthropic request -> OpenAI chat request --------------------------------

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


def to_chat(req: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic Messages request -> the equivalent OpenAI chat request."""
    messages: list[dict[str, Any]] = []
    system = _system_text(req.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, msg in enumerate(req["messages"]):
        content = msg["content"]
        if isinstance(content, list):
            content = [
                _checked(b, f"messages.{i}.content.{j}") for j, b in enumerate(content)
            ]
        if msg["role"] == "assistant":
            turn = _assistant(content)
            if turn is not None:  # an empty turn (thinking only) has nothing to say
                messages.append(turn)
        else:
            messages.extend(_user(content, f"messages.{i}.content"))
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequestError(
            "messages: no content to send (every block was empty or dropped)",
            param="messages",
        )
    out: dict[str, Any] = {
        "model": req["model"],
        "messages": messages,
        "max_tokens": req["max_tokens"],
    }
    for src, dst in (("temperature", "temperature"), ("top_p", "top_p")):
        if req.get(src) is not None:
            out[dst] = req[src]
    if req.get("stop_sequences"):
        out["stop"] = list(req["stop_sequences"])
    if req.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    user_id = (req.get("metadata") or {}).get("user_id")
    if user_id:
        out["user"] = user_id
    if req.get("tools"):
        out["tools"] = [_tool(t) for t in req["tools"]]
    choice = req.get("tool_choice")
    if choice:
        kind = choice.get("type")
        if kind == "tool" and choice.get("name"):
            out["tool_choice"] = {
                "type": "function",
                "function": {"name": choice["name"]},
            }
        elif kind in _TOOL_CHOICE:
            out["tool_choice"] = _TOOL_CHOICE[kind]
        else:
            raise UnsupportedError(
                f"tool_choice type '{kind}' cannot be sent to this provider",
                param="tool_choice",
            )
        if choice.get("disable_parallel_tool_use") and req.get("tools"):
            out["parallel_tool_calls"] = False
    return out


def _checked(block: dict[str, Any], where: str) -> dict[str, Any]:
    """The block, once the fields translation reads have the right types."""
    model = _BLOCKS.get(block.get("type", ""))
    if model is not None:
        try:
            model.model_validate(block)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join([where, *(str(x) for x in err["loc"])])
            msg = "is required" if err["type"] == "missing" else err["msg"]
            raise InvalidRequestError(f"'{loc}': {msg}", param=loc) from None
    return block


def _system_text(system: Any) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    blocks = [_checked(b, f"system.{i}") for i, b in enumerate(system)]
    return "\n\n".join(b["text"] for b in blocks if b.get("type") == "text")


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    # Server tools (web_search_*, bash_*, ...) run at Anthropic; nothing else has them.
    if tool.get("type") not in (None, "custom") or tool.get("input_schema") is None:
        raise UnsupportedError(
            f"tool '{tool.get('name')}' of type '{tool.get('type')}' is an Anthropic "
            "server tool; only custom tools (with input_schema) can be translated",
            param="tools",
        )
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """One user turn -> tool messages (first, answering the calls) then the rest."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        kind = block.get("type")
        if kind == "tool_result":
            text, images = _tool_result(block, f"{where}.{j}.content")
            tools.append(
                {"role": "tool", "tool_call_id": block["tool_use_id"], "content": text}
            )
            # OpenAI tool messages carry text only; images follow as user content.
            parts.extend(images)
        else:
            part = _part(block)
            if part is not None:
                parts.append(part)
    out = list(tools)
    if parts:
        if all(p["type"] == "text" for p in parts):
            text = "\n\n".join(p["text"] for p in parts)
            out.append({"role": "user", "content": text})
        else:
            out.append({"role": "user", "content": parts})
    return out


def _tool_result(block: dict[str, Any], where: str) -> tuple[str, list[dict[str, Any]]]:
    content = block.get("content")
    if content is None:
        text, images = "", []
    elif isinstance(content, str):
        text, images = content, []
    else:
        content = [_checked(b, f"{where}.{k}") for k, b in enumerate(content)]
        texts = [b["text"] for b in content if b.get("type") == "text"]
        images = [p for b in content if b.get("type") == "image" for p in [_part(b)]]
        text = "\n\n".join(texts)
    if block.get("is_error"):
        text = f"Error: {text}" if text else "Error"
    return text, [p for p in images if p is not None]


def _part(block: dict[str, Any]) -> dict[str, Any] | None:
    """One Anthropic content block -> an OpenAI content part (None: dropped)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block["text"]}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block)}}
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return {"type": "text", "text": _source_str(source, "data", block)}
        if source.get("type") == "base64":
            return {
                "type": "file",
                "file": {
                    "filename": block.get("title") or "document.pdf",
                    "file_data": _source_url(block),
                },
            }
        raise UnsupportedError(
            f"document source '{source.get('type')}' cannot be sent to this provider",
            param="messages",
        )
    if kind in ("thinking", "redacted_thinking"):
        return None  # only Anthropic can read its own thinking blocks back
    raise UnsupportedError(
        f"content block type '{kind}' cannot be sent to this provider",
        param="messages",
    )


def _source_url(block: dict[str, Any]) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        media = source.get("media_type") or "application/octet-stream"
        if not isinstance(media, str):
            media = "application/octet-stream"
        return f"data:{media};base64,{_source_str(source, 'data', block)}"
    if source.get("type") == "url":
        return _source_str(source, "url", block)
    raise InvalidRequestError(
        f"{block.get('type')} source must be base64 or url", param="messages"
    )


def _source_str(source: dict[str, Any], key: str, block: dict[str, Any]) -> str:
    value = source.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(
            f"{block.get('type')} source needs a non-empty string '{key}'",
            param="messages",
        )
    return value


def _assistant(content: Any) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(block["text"])
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    if not calls and not "".join(texts):
        return None
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        out["tool_calls"] = calls
    return out


# -- OpenAI chat completion -> Anthropic message ------------------------------

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def usage_from_openai(usage: Any) -> dict[str, Any]:
    """OpenAI usage -> Anthropic usage (input_tokens excludes cache reads)."""
    usage = _dict(usage)
    prompt = _int(usage.get("prompt_tokens"))
    cached = _int(_dict(usage.get("prompt_tokens_details")).get("cached_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    return {
        "input_tokens": max(0, prompt - cached - written),
        "output_tokens": _int(usage.get("completion_tokens")),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def usage_to_openai(usage: Any) -> dict[str, Any]:
    """Anthropic usage -> OpenAI usage (also providers/anthropic.py's map_usage).

    prompt_tokens counts all input (uncached + cache reads + cache writes), as
    OpenAI's does; the raw cache counts stay alongside so cost can price them.
    A count that is not a non-negative int counts as 0.
    """
    usage = _dict(usage)
    uncached = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    return completions.usage(
        uncached + read + written,
        output,
        prompt_details={"cached_tokens": read},
        cache_read_input_tokens=read,
        cache_creation_input_tokens=written,
    )


def message_usage(message: Any) -> dict[str, Any]:
    """The OpenAI-shaped usage of a native Anthropic message."""
    return usage_to_openai(message.get("usage") if isinstance(message, dict) else None)


def event_usage(data: str) -> dict[str, int]:
    """The usage counts in a native message_start / message_delta event's data."""
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    event = _dict(event)
    usage = _dict(_dict(event.get("message")).get("usage") or event.get("usage"))
    return {k: v for k, v in usage.items() if isinstance(v, int)}


def event_error(data: str, provider: str) -> UpstreamError:
    """A native `error` event -> UpstreamError (overloaded and rate limits retry)."""
    try:
        err = _dict(_dict(orjson.loads(data)).get("error"))
    except orjson.JSONDecodeError:
        err = {}
    kind, message = _str(err.get("type")), _str(err.get("message"))
    status = {"overloaded_error": 529, "rate_limit_error": 429}.get(kind, 500)
    return UpstreamError(
        f"{provider}: {message or kind or 'stream error'}",
        provider=provider,
        upstream_status=status,
    )


def message_id(openai_id: str | None) -> str:
    return f"msg_{openai_id}" if openai_id else "msg_crabllm"


def from_chat(resp: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat.completion -> an Anthropic message (first choice)."""
    choices = resp.get("choices")
    choice = _dict(choices[0] if isinstance(choices, list) and choices else None)
    msg = _dict(choice.get("message"))
    content: list[dict[str, Any]] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = msg.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for i, call in enumerate(_dicts(msg.get("tool_calls"))):
        fn = _dict(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": _str(call.get("id")) or f"call_{i}",
                "name": _str(fn.get("name")),
                "input": _arguments(fn.get("arguments")),
            }
        )
    return {
        "id": message_id(_str(resp.get("id"))),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(_str(choice.get("finish_reason"))),
        "stop_sequence": None,
        "usage": usage_from_openai(resp.get("usage")),
    }


def _dict(value: Any) -> dict[str, Any]:
    # Upstreams that only claim OpenAI compatibility send odd shapes; never crash.
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    """A token count: a non-negative int, else 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_value": parsed}


# -- OpenAI chunks -> Anthropic stream events ---------------------------------

Event = tuple[str, dict[str, Any]]


class EventTranslator:
    """Feed OpenAI chunks, get Anthropic (event name, payload) pairs back.

    The sequence is message_start, then per block content_block_start / _delta /
    _stop, then message_delta (stop_reason, usage) and message_stop from finish().
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.block: int | None = None  # index of the open block
        self.block_type: str | None = None
        self.count = 0  # blocks opened so far
        self.tools: dict[int, int] = {}  # OpenAI tool_call index -> block index
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        if not self.started:
            out.append(self._start(chunk))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in _dicts(chunk.get("choices")):
            if choice.get("index", 0) != 0:
                continue
            delta = _dict(choice.get("delta"))
            reasoning = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(reasoning, str) and reasoning:
                out.extend(self._open("thinking"))
                out.append(
                    self._delta({"type": "thinking_delta", "thinking": reasoning})
                )
            text = delta.get("content")
            if isinstance(text, str) and text:
                out.extend(self._open("text"))
                out.append(self._delta({"type": "text_delta", "text": text}))
            for pos, call in enumerate(_dicts(delta.get("tool_calls"))):
                out.extend(self._tool_delta(pos, call))
            if isinstance(choice.get("finish_reason"), str):
                self.finish_reason = choice["finish_reason"]
        return out

    def finish(self) -> list[Event]:
        """The closing events; call once when the chunks end."""
        out: list[Event] = []
        if not self.started:
            out.append(self._start({}))
        out.extend(self._close())
        usage = usage_from_openai(self.usage)
        out.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": stop_reason(self.finish_reason),
                        "stop_sequence": None,
                    },
                    "usage": usage,
                },
            )
        )
        out.append(("message_stop", {"type": "message_stop"}))
        return out

    def _start(self, chunk: dict[str, Any]) -> Event:
        self.started = True
        return (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id(_str(chunk.get("id"))),
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            },
        )

    def _open(self, kind: str, block: dict[str, Any] | None = None) -> list[Event]:
        if self.block is not None and self.block_type == kind and block is None:
            return []
        out = self._close()
        index = self.count
        self.count += 1
        self.block, self.block_type = index, kind
        if block is None:
            block = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
        out.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": block},
            )
        )
        return out

    def _close(self) -> list[Event]:
        if self.block is None:
            return []
        index, self.block, self.block_type = self.block, None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> Event:
        return (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": self.block if index is None else index,
                "delta": delta,
            },
        )

    def _tool_delta(self, pos: int, call: dict[str, Any]) -> list[Event]:
        out: list[Event] = []
        key = call.get("index", pos)
        if not isinstance(key, int):
            key = pos
        fn = _dict(call.get("function"))
        if key not in self.tools:
            block = {
                "type": "tool_use",
                "id": _str(call.get("id")) or f"call_{key}",
                "name": _str(fn.get("name")),
                "input": {},
            }
            out.extend(self._open("tool_use", block))
            self.tools[key] = self.count - 1
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            # A delta for an earlier call (rare interleaving) still goes to its index.
            out.append(
                self._delta(
                    {"type": "input_json_delta", "partial_json": args},
                    self.tools[key],
                )
            )
        return out
