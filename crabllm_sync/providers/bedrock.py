"""AWS Bedrock Converse / ConverseStream behind the OpenAI chat API.

Translation is pure (OpenAI dicts <-> Converse dicts); the one transport is a
boto3 bedrock-runtime client, whose errors are turned into UpstreamError here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import struct
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions as boto_errors
import urllib3.exceptions
from botocore.config import Config as BotoConfig

from crabllm_sync.errors import (
    InvalidRequestError,
    UnsupportedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment
from crabllm_sync.wire import completions as oai

# None: an unset base_url means boto3's own regional endpoint.
BASE_URL = None
DEFAULT_REGION = "us-east-1"
PROVIDER = "bedrock"

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

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}

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

# Embedding models served through InvokeModel, by modelId substring.
TITAN_EMBED = "amazon.titan-embed-text"
COHERE_EMBED = "cohere.embed"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
COHERE_BATCH = 96  # texts per Cohere InvokeModel call
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
TOKEN_COUNT_HEADER = "x-amzn-bedrock-input-token-count"

# Error codes (botocore's Error.Code) -> the status we report upstream.
AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "IncompleteSignature",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
    }
)
ERROR_STATUS = {
    "throttlingexception": 429,
    "modelnotreadyexception": 429,
    "servicequotaexceededexception": 429,
    "validationexception": 400,
    "resourcenotfoundexception": 404,
    "serviceunavailableexception": 503,
    "internalserverexception": 500,
    "modelerrorexception": 502,
    "modelstreamerrorexception": 502,
}
TIMEOUT_CODES = frozenset({"modeltimeoutexception"})

_TOOL_ID = re.compile(r"^[a-zA-Z0-9_.:-]{1,64}$")
_METADATA_VALUE = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,.-]{0,256}$")
_DOC_NAME_BAD = re.compile(r"[^a-zA-Z0-9\s\-()\[\]]+")


# -- Private helpers: request and response pieces ----------------------------


def _refuse(param: str, detail: str = "") -> UnsupportedError:
    why = f": {detail}" if detail else ""
    return UnsupportedError(
        f"'{param}' is not supported by the {PROVIDER} provider (Converse){why}",
        param=param,
    )


def _invalid(param: str, detail: str) -> InvalidRequestError:
    return InvalidRequestError(f"{param}: {detail}", param=param)


def _tool_use_id(call_id: Any, param: str) -> str:
    """A Converse-valid toolUseId for an OpenAI tool call id, stable per input."""
    if not isinstance(call_id, str) or not call_id:
        raise _invalid(param, "a tool call id is required")
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
        raise _invalid(param, "expected a base64 data URL (data:<mime>;base64,...)")
    mime = head[len("data:") : -len(";base64")].split(";")[0].strip().lower()
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(param, "the data URL is not valid base64") from None
    if not raw:
        raise _invalid(param, "the data URL is empty")
    return mime, raw


def _image_block(part: dict[str, Any], param: str) -> dict[str, Any]:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise _invalid(f"{param}.image_url.url", "a URL string is required")
    if url.startswith("s3://"):
        ext = url.rsplit(".", 1)[-1].lower()
        fmt = IMAGE_FORMATS.get(f"image/{ext}")
        if fmt is None:
            raise _invalid(
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
        raise _invalid(f"{param}.file.file_data", "a data URL is required")
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
        raise _invalid(f"{param}.input_audio.data", "not valid base64") from None
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
        raise _invalid(param, "content must be a string or a list of parts")
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        p = f"{param}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allow:
            raise _refuse(f"{p}.type", f"content part type {kind!r} here")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise _invalid(f"{p}.{kind}", "a string is required")
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
        raise _invalid(param, 'expected {"type": "ephemeral", "ttl"?}')
    point: dict[str, Any] = {"type": "default"}
    ttl = control.get("ttl")
    if ttl is not None:
        if ttl not in ("5m", "1h"):
            raise _invalid(f"{param}.ttl", "'5m' or '1h'")
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
                raise _invalid(f"{p}.data", "not valid base64") from None
            blocks.append({"reasoningContent": {"redactedContent": raw}})
        else:
            raise _invalid(f"{p}.type", "expected 'thinking' or 'redacted_thinking'")
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
            raise _invalid(
                f"{param}.function.arguments", "must be a JSON object string"
            ) from None
    if not isinstance(parsed, dict):
        raise _invalid(f"{param}.function.arguments", "must be a JSON object")
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


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _tool_config(
    body: dict[str, Any], turns: list[dict[str, Any]]
) -> dict[str, Any] | None:
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not tools:
        if choice not in (None, "none", "auto"):
            raise _invalid("tool_choice", "tool_choice needs tools")
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
            raise _invalid(
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


def _usage(usage: dict[str, Any] | None) -> dict[str, Any]:
    return map_usage(usage or {})


def _reasoning_out(blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(reasoning text, thinking_blocks to echo) from reasoningContent blocks."""
    texts: list[str] = []
    echo: list[dict[str, Any]] = []
    for block in blocks:
        rc = block["reasoningContent"]
        if "reasoningText" in rc:
            rt = rc["reasoningText"]
            texts.append(rt.get("text", ""))
            if rt.get("signature"):
                echo.append(
                    {
                        "type": "thinking",
                        "thinking": rt.get("text", ""),
                        "signature": rt["signature"],
                    }
                )
        elif "redactedContent" in rc:
            echo.append(
                {
                    "type": "redacted_thinking",
                    "data": base64.b64encode(rc["redactedContent"]).decode(),
                }
            )
    return "".join(texts), echo


def _completion_id(request_id: str | None, seed: Any) -> str:
    if request_id:
        return f"chatcmpl-{request_id}"
    digest = hashlib.sha256(json.dumps(seed, default=str).encode()).hexdigest()
    return f"chatcmpl-{digest[:24]}"


# -- Private helpers: transport errors ---------------------------------------


def stream_error(code: str, payload: dict[str, Any]) -> UpstreamError:
    """The UpstreamError for an exception event inside a ConverseStream."""
    message = payload.get("message") or payload.get("Message") or code
    return _coded_error(PROVIDER, code, message, None, None)


def _coded_error(
    provider: str,
    code: str,
    message: str,
    status: int | None,
    retry_after: float | None,
) -> UpstreamError:
    if code in AUTH_CODES or status in (401, 403):
        return UpstreamError(
            f"{provider}: authentication with the provider failed: {code}: {message}",
            provider=provider,
            upstream_status=status if status in (401, 403) else 403,
        )
    lowered = code.lower()
    if lowered in TIMEOUT_CODES:
        return UpstreamTimeoutError(
            f"{provider}: {code}: {message}", provider=provider, upstream_status=408
        )
    upstream = ERROR_STATUS.get(lowered, status or 502)
    return UpstreamError(
        f"{provider}: {code}: {message}" if code else f"{provider}: {message}",
        provider=provider,
        upstream_status=upstream,
        retry_after=retry_after,
    )


def _translate_error(dep: Deployment, exc: Exception) -> UpstreamError:
    """botocore / urllib3 exceptions -> the gateway's upstream errors."""
    name = dep.provider
    if isinstance(exc, boto_errors.ClientError):
        err = exc.response.get("Error") or {}
        meta = exc.response.get("ResponseMetadata") or {}
        headers = meta.get("HTTPHeaders") or {}
        return _coded_error(
            name,
            str(err.get("Code") or ""),
            str(err.get("Message") or "no message"),
            meta.get("HTTPStatusCode"),
            http.parse_retry_after(headers.get("retry-after")),
        )
    if isinstance(
        exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError
    ):
        return UpstreamError(
            f"{name}: authentication with the provider failed: {exc}",
            provider=name,
            upstream_status=403,
        )
    timeouts = (
        boto_errors.ConnectTimeoutError,
        boto_errors.ReadTimeoutError,
        urllib3.exceptions.TimeoutError,
    )
    if isinstance(exc, timeouts):
        return UpstreamTimeoutError(f"{name}: timed out", provider=name)
    return UpstreamError(
        f"{name}: connection failed: {type(exc).__name__}", provider=name
    )


_TRANSPORT_ERRORS = (
    boto_errors.ClientError,
    boto_errors.BotoCoreError,
    urllib3.exceptions.HTTPError,
    OSError,
)


def _call(dep: Deployment, fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return fn(**kwargs)
    except boto_errors.ParamValidationError as exc:
        # botocore checked our translation against its service model.
        raise InvalidRequestError(f"{dep.provider}: {exc}") from None
    except _TRANSPORT_ERRORS as exc:
        raise _translate_error(dep, exc) from exc


def _stream(
    dep: Deployment, events: Any, translator: ChunkTranslator
) -> Iterator[dict[str, Any]]:
    try:
        for event in events:
            yield from translator.feed(event)
    except _TRANSPORT_ERRORS as exc:
        raise _translate_error(dep, exc) from exc
    finally:
        events.close()


# -- Translation --------------------------------------------------------------


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


def map_stop_reason(reason: str | None) -> str:
    """Converse stopReason -> OpenAI finish_reason."""
    # malformed_model_output / malformed_tool_use and anything new end as "stop".
    return STOP_REASONS.get(reason or "", "stop")


def map_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Converse TokenUsage -> OpenAI usage (cache tokens counted as prompt)."""
    read = int(usage.get("cacheReadInputTokens") or 0)
    write = int(usage.get("cacheWriteInputTokens") or 0)
    prompt = int(usage.get("inputTokens") or 0) + read + write
    details: dict[str, int] = {"cached_tokens": read}
    if "cacheWriteInputTokens" in usage:
        details["cache_write_tokens"] = write
    completion = int(usage.get("outputTokens") or 0)
    return oai.usage(prompt, completion, prompt_details=details)


def translate_response(
    response: dict[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """A Converse response -> an OpenAI chat.completion."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    reasoning: list[dict[str, Any]] = []
    for block in content:
        if "text" in block:
            texts.append(block["text"])
        elif "toolUse" in block:
            tu = block["toolUse"]
            args = json.dumps(tu.get("input", {}), ensure_ascii=False)
            calls.append(oai.tool_call(tu["toolUseId"], tu["name"], args))
        elif "reasoningContent" in block:
            reasoning.append(block)
        elif "citationsContent" in block:
            for piece in block["citationsContent"].get("content") or []:
                texts.append(piece.get("text", ""))
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        text, echo = _reasoning_out(reasoning)
        message["reasoning_content"] = text
        if echo:
            message["thinking_blocks"] = echo
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
    finish = map_stop_reason(response.get("stopReason"))
    return oai.completion(
        _completion_id(request_id, content),
        model,
        created,
        [oai.choice(message, finish)],
        _usage(response.get("usage")),
    )


class ChunkTranslator:
    """ConverseStream events -> OpenAI chat.completion.chunk dicts."""

    def __init__(
        self, *, model: str, created: int, id: str, include_usage: bool
    ) -> None:
        self.id = id
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._tools: dict[int, int] = {}  # contentBlockIndex -> tool_calls index
        self._reasoning: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] | None = None

    def _chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        return oai.chunk(self.id, self.model, self.created, delta, finish_reason)

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """Zero or more chunks for one ConverseStream event."""
        out: list[dict[str, Any]] = []
        for name, payload in event.items():
            handler = getattr(self, f"_on_{name}", None)
            if handler is not None:
                out += handler(payload or {})
            elif name.endswith("Exception"):
                raise stream_error(name, payload or {})
        return out

    def _on_messageStart(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def _on_contentBlockStart(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        tool = (payload.get("start") or {}).get("toolUse")
        if tool is None:
            return []
        index = len(self._tools)
        self._tools[payload.get("contentBlockIndex", 0)] = index
        call = oai.tool_call_start(index, tool["toolUseId"], tool["name"])
        return [self._chunk({"tool_calls": [call]})]

    def _on_contentBlockDelta(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        block = payload.get("contentBlockIndex", 0)
        delta = payload.get("delta") or {}
        if "text" in delta:
            return [self._chunk({"content": delta["text"]})] if delta["text"] else []
        if "toolUse" in delta:
            piece = delta["toolUse"].get("input", "")
            index = self._tools.get(block)
            if index is None or not piece:
                return []
            call = oai.tool_call_arguments(index, piece)
            return [self._chunk({"tool_calls": [call]})]
        if "reasoningContent" in delta:
            rc = delta["reasoningContent"]
            state = self._reasoning.setdefault(block, {"text": []})
            if "signature" in rc:
                state["signature"] = rc["signature"]
            if "redactedContent" in rc:
                state["redacted"] = state.get("redacted", b"") + rc["redactedContent"]
            if rc.get("text"):
                state["text"].append(rc["text"])
                return [self._chunk({"reasoning_content": rc["text"]})]
        return []

    def _on_contentBlockStop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        state = self._reasoning.pop(payload.get("contentBlockIndex", 0), None)
        if state is None:
            return []
        # The signed block arrives whole once it is complete, ready to echo.
        echo = []
        if state.get("signature"):
            echo.append(
                {
                    "type": "thinking",
                    "thinking": "".join(state["text"]),
                    "signature": state["signature"],
                }
            )
        if state.get("redacted"):
            echo.append(
                {
                    "type": "redacted_thinking",
                    "data": base64.b64encode(state["redacted"]).decode(),
                }
            )
        return [self._chunk({"thinking_blocks": echo})] if echo else []

    def _on_messageStop(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        return [self._chunk({}, map_stop_reason(payload.get("stopReason")))]

    def _on_metadata(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        self.usage = _usage(payload.get("usage"))
        if not self.include_usage:
            return []
        return [oai.usage_chunk(self.id, self.model, self.created, self.usage)]


def _embedding_inputs(body: dict[str, Any]) -> list[str]:
    inputs = body.get("input")
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and all(isinstance(x, str) for x in inputs):
        return list(inputs)
    raise _refuse("input", "token arrays; send text")


def translate_embedding_request(body: dict[str, Any]) -> list[dict[str, Any]]:
    """An OpenAI embeddings body -> the InvokeModel calls that answer it."""
    model = str(body["model"])
    for key, value in body.items():
        if key in ("model", "input", "encoding_format", "dimensions", "input_type"):
            continue
        if value is not None:
            raise _refuse(key)
    texts = _embedding_inputs(body)
    dims = body.get("dimensions")

    def call(payload: dict[str, Any]) -> dict[str, Any]:
        return {
            "modelId": model,
            "body": json.dumps(payload).encode(),
            "contentType": "application/json",
            "accept": "application/json",
        }

    if TITAN_EMBED in model:
        if body.get("input_type") is not None:
            raise _refuse("input_type", "Titan has no input types")
        extra: dict[str, Any] = {}
        if dims is not None:
            if "v2" not in model or dims not in TITAN_V2_DIMENSIONS:
                raise _refuse("dimensions", "Titan v2 takes 256, 512 or 1024")
            extra["dimensions"] = dims
        # Titan embeds one text per call.
        return [call({"inputText": t, **extra}) for t in texts]
    if COHERE_EMBED in model:
        if dims is not None:
            raise _refuse("dimensions", f"model {model!r}")
        kind = body.get("input_type") or "search_document"
        if kind not in COHERE_INPUT_TYPES:
            raise _invalid("input_type", f"one of {', '.join(COHERE_INPUT_TYPES)}")
        return [
            call({"texts": texts[i : i + COHERE_BATCH], "input_type": kind})
            for i in range(0, len(texts), COHERE_BATCH)
        ]
    raise _refuse(
        "model", f"embeddings from {model!r} (Titan and Cohere embed models are served)"
    )


def _encode_vector(vector: list[float], encoding: str | None) -> Any:
    if encoding == "base64":
        # OpenAI's base64 form: little-endian float32.
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def translate_embedding_response(
    answers: list[tuple[dict[str, Any], int | None]], body: dict[str, Any]
) -> dict[str, Any]:
    """(InvokeModel JSON, token-count header) per call -> OpenAI embeddings."""
    vectors: list[list[float]] = []
    tokens = 0
    for answer, header_tokens in answers:
        if "embedding" in answer:  # Titan
            vectors.append(answer["embedding"])
            tokens += int(answer.get("inputTextTokenCount") or header_tokens or 0)
        else:  # Cohere: a list, or by type when embedding_types was asked
            found = answer.get("embeddings")
            if isinstance(found, dict):
                found = found.get("float") or []
            vectors.extend(found or [])
            tokens += int(header_tokens or 0)
    encoding = body.get("encoding_format")
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": i,
                "embedding": _encode_vector(v, encoding),
            }
            for i, v in enumerate(vectors)
        ],
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


# -- Public API ---------------------------------------------------------------


def make_session(dep: Deployment) -> Any:
    """A boto3 bedrock-runtime client for one provider (pooled, no retries)."""
    if bool(dep.access_key) != bool(dep.secret_key):
        raise UpstreamError(
            f"{dep.provider}: authentication with the provider failed: set both "
            "access_key and secret_key, or neither (standard AWS credentials)",
            provider=dep.provider,
            upstream_status=403,
        )
    session = boto3.session.Session(
        aws_access_key_id=dep.access_key or None,
        aws_secret_access_key=dep.secret_key or None,
        region_name=dep.region or DEFAULT_REGION,
    )
    connect, read = http.timeouts(dep.timeout)
    config = BotoConfig(
        connect_timeout=connect,
        read_timeout=read,
        # routing.py holds the only retry policy. botocore's `max_attempts`
        # counts retries (1 would mean two calls); total_max_attempts is calls.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=http.POOL_SIZE,
        tcp_keepalive=True,
    )
    return session.client(
        "bedrock-runtime", endpoint_url=dep.base_url or None, config=config
    )


def chat(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    """One Converse call, answered as an OpenAI chat.completion."""
    kwargs = translate_request({**body, "model": dep.model})
    response = _call(dep, session.converse, kwargs)
    return translate_response(response, model=dep.model, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: Any, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """One ConverseStream call; its events as OpenAI chunks.

    The call is made (and its HTTP errors raised) before this returns; errors
    inside the event stream raise from the iterator.
    """
    kwargs = translate_request({**body, "model": dep.model})
    response = _call(dep, session.converse_stream, kwargs)
    request_id = (response.get("ResponseMetadata") or {}).get("RequestId")
    translator = ChunkTranslator(
        model=dep.model,
        created=int(time.time()),
        id=_completion_id(request_id, kwargs["messages"]),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
    )
    return _stream(dep, response["stream"], translator)


def embeddings(dep: Deployment, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Titan / Cohere embeddings through InvokeModel, answered in OpenAI's shape."""
    body = {**body, "model": dep.model}
    answers = []
    for kwargs in translate_embedding_request(body):
        response = _call(dep, session.invoke_model, kwargs)
        headers = (response.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
        count = headers.get(TOKEN_COUNT_HEADER)
        try:
            raw = response["body"].read()
        except _TRANSPORT_ERRORS as exc:
            raise _translate_error(dep, exc) from exc
        try:
            answer = json.loads(raw)
        except ValueError:
            raise UpstreamError(
                f"{dep.provider}: answered with invalid JSON",
                provider=dep.provider,
                upstream_status=502,
            ) from None
        answers.append((answer, int(count) if count and count.isdigit() else None))
    return translate_embedding_response(answers, body)
