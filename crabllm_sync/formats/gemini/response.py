"""Canonical (OpenAI chat) answers -> Gemini GenerateContentResponse; usage
both ways; errors in Google's shape. Pure.

The mirror image of providers/google/response.py (Gemini -> chat).
"""

from __future__ import annotations

from typing import Any

import orjson

from crabllm_sync.errors import GatewayError
from crabllm_sync.providers.google.response import map_usage

# OpenAI finish_reason -> Gemini finishReason.
_FINISH = {
    "stop": "STOP",
    "tool_calls": "STOP",
    "function_call": "STOP",
    "length": "MAX_TOKENS",
    "content_filter": "SAFETY",
}
# HTTP status -> Google's canonical status name (google.rpc.Code).
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def to_google(err: GatewayError) -> dict[str, Any]:
    """Google's error body: {"error": {"code", "message", "status"}}."""
    status = err.http_status
    return {
        "error": {
            "code": status,
            "message": err.message,
            "status": _STATUS.get(
                status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"
            ),
        }
    }


def finish_reason(reason: str | None) -> str:
    return _FINISH.get(reason or "", "OTHER")


def usage_metadata(usage: dict[str, Any] | None) -> dict[str, Any]:
    """OpenAI usage -> usageMetadata (thoughts apart from the answer's tokens)."""
    usage = usage or {}
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    thoughts = (usage.get("completion_tokens_details") or {}).get(
        "reasoning_tokens"
    ) or 0
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": max(completion - thoughts, 0),
        "totalTokenCount": usage.get("total_tokens") or prompt + completion,
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if cached:
        meta["cachedContentTokenCount"] = cached
    return meta


def native_usage(answer: Any) -> dict[str, Any] | None:
    """The OpenAI usage of a native Gemini answer (or stream event)."""
    meta = answer.get("usageMetadata") if isinstance(answer, dict) else None
    return map_usage(meta) if isinstance(meta, dict) else None


def _signature(holder: dict[str, Any]) -> str | None:
    extra = holder.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) else None


def function_call(call: dict[str, Any]) -> dict[str, Any]:
    """One complete OpenAI tool call -> a Gemini functionCall part."""
    fn = call.get("function") or {}
    try:
        args = orjson.loads(fn.get("arguments") or "{}")
    except orjson.JSONDecodeError:
        args = {"arguments": fn.get("arguments")}
    if not isinstance(args, dict):
        args = {"value": args}
    part: dict[str, Any] = {
        "functionCall": {"id": call.get("id"), "name": fn.get("name"), "args": args}
    }
    sig = _signature(call)
    if sig:
        part["thoughtSignature"] = sig
    return part


def message_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """An assistant message -> Gemini parts: thoughts, text, function calls."""
    parts: list[dict[str, Any]] = []
    if message.get("reasoning_content"):
        parts.append({"text": message["reasoning_content"], "thought": True})
    text = message.get("content")
    sig = _signature(message)
    if text or sig:
        part: dict[str, Any] = {"text": text or ""}
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    parts += [function_call(c) for c in message.get("tool_calls") or []]
    return parts


def response_id(chat_id: Any) -> str:
    return str(chat_id or "").removeprefix("chatcmpl-")


def from_canonical(answer: dict[str, Any], model: str) -> dict[str, Any]:
    """A chat.completion -> a Gemini generateContent answer."""
    candidates = []
    for pos, choice in enumerate(answer.get("choices") or []):
        message = choice.get("message") or {}
        candidates.append(
            {
                "content": {"role": "model", "parts": message_parts(message)},
                "finishReason": finish_reason(choice.get("finish_reason")),
                "index": choice.get("index", pos),
            }
        )
    return {
        "candidates": candidates,
        "usageMetadata": usage_metadata(answer.get("usage")),
        "modelVersion": model,
        "responseId": response_id(answer.get("id")),
    }
