"""Gemini generateContent answer -> OpenAI chat.completion; the finish reason,
usage, ids and tool calls the stream translation shares. Pure.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from crabllm_sync.errors import UpstreamError
from crabllm_sync.providers.google.messages import PROVIDER
from crabllm_sync.wire import completions as oai

_CONTENT_FILTER = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "LANGUAGE",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)


def _google_extra(signature: str) -> dict[str, Any]:
    return {"google": {"thought_signature": signature}}


def _call_id(response_id: str, candidate: int, ordinal: int, fc: dict[str, Any]) -> str:
    """Gemini's id for a function call, else one derived from its position."""
    if fc.get("id"):
        return str(fc["id"])
    seed = orjson.dumps(
        [response_id, candidate, ordinal, fc.get("name"), fc.get("args") or {}],
        option=orjson.OPT_SORT_KEYS,
    )
    return "call_" + hashlib.sha256(seed).hexdigest()[:24]


def _completion_id(native: dict[str, Any]) -> str:
    rid = native.get("responseId")
    if rid:
        return f"chatcmpl-{rid}"
    digest = hashlib.sha256(orjson.dumps(native, option=orjson.OPT_SORT_KEYS))
    return "chatcmpl-" + digest.hexdigest()[:24]


def _tool_call(
    fc: dict[str, Any], call_id: str, signature: str | None
) -> dict[str, Any]:
    args = orjson.dumps(fc.get("args") or {}).decode()
    call = oai.tool_call(call_id, fc.get("name") or "", args)
    if signature:
        call["extra_content"] = _google_extra(signature)
    return call


def _unreadable(part: dict[str, Any]) -> UpstreamError:
    kinds = ", ".join(sorted(k for k in part if k != "thoughtSignature")) or "empty"
    return UpstreamError(
        f"{PROVIDER}: answered a part the OpenAI chat format cannot carry ({kinds})",
        provider=PROVIDER,
        upstream_status=502,
    )


def map_finish_reason(reason: str | None, has_tool_calls: bool = False) -> str | None:
    """Gemini's finishReason -> OpenAI's finish_reason (None while running)."""
    if not reason:
        return None
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _CONTENT_FILTER:
        return "content_filter"
    return "tool_calls" if has_tool_calls else "stop"


def map_usage(meta: dict[str, Any] | None) -> dict[str, Any]:
    """usageMetadata -> OpenAI usage; completion tokens include thoughts."""
    meta = meta or {}
    prompt = (meta.get("promptTokenCount") or 0) + (
        meta.get("toolUsePromptTokenCount") or 0
    )
    thoughts = meta.get("thoughtsTokenCount") or 0
    return oai.usage(
        prompt,
        (meta.get("candidatesTokenCount") or 0) + thoughts,
        prompt_details={"cached_tokens": meta.get("cachedContentTokenCount") or 0},
        completion_details={"reasoning_tokens": thoughts},
    )


def translate_response(
    native: dict[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """A Gemini generateContent answer -> an OpenAI chat.completion."""
    rid = native.get("responseId") or ""
    choices = []
    for pos, cand in enumerate(native.get("candidates") or []):
        index = cand.get("index", pos)
        texts, thoughts, calls = [], [], []
        message_sig = None
        for part in (cand.get("content") or {}).get("parts") or []:
            sig = part.get("thoughtSignature")
            if "functionCall" in part:
                fc = part["functionCall"]
                cid = _call_id(rid, index, len(calls), fc)
                calls.append(_tool_call(fc, cid, sig))
            elif part.get("thought"):
                thoughts.append(part.get("text") or "")
                message_sig = message_sig or sig
            elif "text" in part or set(part) == {"thoughtSignature"}:
                texts.append(part.get("text") or "")
                message_sig = message_sig or sig
            else:
                raise _unreadable(part)
        text = "".join(texts)
        filtered = cand.get("finishReason") in _CONTENT_FILTER
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not (calls or filtered) else None,
            "refusal": None,
        }
        if thoughts:
            message["reasoning_content"] = "".join(thoughts)
        if calls:
            message["tool_calls"] = calls
        if message_sig:
            message["extra_content"] = _google_extra(message_sig)
        finish = map_finish_reason(cand.get("finishReason"), bool(calls))
        choices.append(oai.choice(message, finish, index))
    if not choices and (native.get("promptFeedback") or {}).get("blockReason"):
        blocked = {"role": "assistant", "content": None, "refusal": None}
        choices.append(oai.choice(blocked, "content_filter"))
    return oai.completion(
        _completion_id(native),
        native.get("modelVersion") or model,
        created,
        choices,
        map_usage(native.get("usageMetadata")),
    )
