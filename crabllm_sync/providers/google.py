"""Google Gemini (generateContent) behind the OpenAI chat and embeddings API.

Translation is pure (OpenAI dicts <-> Gemini dicts, no I/O, clock or randomness);
chat(), chat_stream() and embeddings() each make one call through providers/http.
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import re
import struct
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import orjson
import requests

from crabllm_sync import sse
from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.providers import http
from crabllm_sync.providers.google_schema import clean_schema
from crabllm_sync.routing import Deployment
from crabllm_sync.wire import completions as oai

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
PROVIDER = "google"

# -- Native wire helpers ------------------------------------------------------

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
_GENERATED_ID = re.compile(r"call_[0-9a-f]{24}")
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+)?((?:;[^;,]*)*?);base64,(.*)", re.S)


def _refuse(param: str, why: str = "") -> UnsupportedError:
    detail = f": {why}" if why else ""
    return UnsupportedError(
        f"parameter '{param}' is not supported by provider '{PROVIDER}'{detail}",
        param=param,
    )


def _invalid(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}': {why}", param=param)


def _model_path(model: str) -> str:
    if model.startswith(("models/", "tunedModels/")):
        return quote(model, safe="/")
    return "models/" + quote(model, safe="")


def _headers(dep: Deployment, accept: str = "application/json") -> dict[str, str]:
    headers = {"content-type": "application/json", "accept": accept}
    if dep.api_key:
        headers["x-goog-api-key"] = dep.api_key
    return headers


def _text_of(content: Any, where: str) -> str:
    """Text of a string or a list of text parts (system, tool, assistant)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind in ("text", "refusal"):
            texts.append(part.get(kind) or "")
        else:
            raise _refuse(f"{where}.content[{j}].type", f"'{kind}' is not text")
    return "".join(texts)


def _signature(holder: dict[str, Any]) -> str | None:
    extra = holder.get("extra_content")
    if isinstance(extra, dict) and isinstance(extra.get("google"), dict):
        sig = extra["google"].get("thought_signature")
        return sig if isinstance(sig, str) else None
    return None


def _google_extra(signature: str) -> dict[str, Any]:
    return {"google": {"thought_signature": signature}}


def _data_part(url: str, where: str) -> dict[str, Any]:
    m = _DATA_URL.fullmatch(url)
    if not m:
        raise _invalid(where, "a data: URL must be base64 (data:<mime>;base64,...)")
    return {
        "inlineData": {
            "mimeType": m.group(1) or "application/octet-stream",
            "data": m.group(3),
        }
    }


def _image_part(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _invalid(where, "image_url.url is required")
    if url.startswith("data:"):
        return _data_part(url, where)
    scheme = urlsplit(url).scheme
    if scheme not in ("http", "https", "gs"):
        raise _refuse(where, f"image URL scheme '{scheme}'; send a data: URL")
    mime, _ = mimetypes.guess_type(urlsplit(url).path)
    if not mime or not mime.startswith("image/"):
        raise _refuse(
            where,
            "Gemini needs the image type of a URL and it cannot be told from "
            "this URL's name; send the image as a data: URL",
        )
    return {"fileData": {"mimeType": mime, "fileUri": url}}


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        at = f"{where}.content[{j}]"
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                parts.append({"text": part["text"]})
        elif kind == "image_url":
            parts.append(_image_part(part.get("image_url"), at + ".image_url"))
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            fmt = audio.get("format") or "wav"
            mime = {"mp3": "audio/mp3", "wav": "audio/wav"}.get(fmt, f"audio/{fmt}")
            parts.append(
                {"inlineData": {"mimeType": mime, "data": audio.get("data", "")}}
            )
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise _refuse(at + ".file.file_id", "send the file as file_data")
            data = file["file_data"]
            if not data.startswith("data:"):
                mime = mimetypes.guess_type(file.get("filename") or "")[0]
                data = f"data:{mime or 'application/pdf'};base64,{data}"
            parts.append(_data_part(data, at + ".file.file_data"))
        else:
            raise _refuse(at + ".type", f"content part type '{kind}'")
    return parts


def _tool_calls(msg: dict[str, Any], where: str) -> list[dict[str, Any]]:
    calls = list(msg.get("tool_calls") or [])
    if msg.get("function_call"):
        calls.append({"type": "function", "function": msg["function_call"]})
    parts = []
    for j, call in enumerate(calls):
        at = f"{where}.tool_calls[{j}]"
        if call.get("type", "function") != "function":
            raise _refuse(at + ".type", f"tool call type '{call.get('type')}'")
        fn = call.get("function") or {}
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise _invalid(at + ".function.arguments", "is not valid JSON") from None
        if not isinstance(args, dict):
            raise _invalid(at + ".function.arguments", "must be a JSON object")
        fc: dict[str, Any] = {"name": fn.get("name"), "args": args}
        call_id = call.get("id")
        if call_id and not _GENERATED_ID.fullmatch(call_id):
            fc["id"] = call_id  # Gemini's own id goes back to it
        part: dict[str, Any] = {"functionCall": fc}
        sig = _signature(call)
        if sig:
            part["thoughtSignature"] = sig
        parts.append(part)
    return parts


def _function_response(
    msg: dict[str, Any], names: dict[str, str], where: str
) -> dict[str, Any]:
    call_id = msg.get("tool_call_id")
    name = names.get(call_id or "") or msg.get("name")
    if not name:
        raise _invalid(
            where + ".tool_call_id",
            f"'{call_id}' matches no tool call of an earlier assistant message; "
            "Gemini needs the function name of each tool result",
        )
    text = _text_of(msg.get("content"), where)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"output": text}
    fr: dict[str, Any] = {"name": name, "response": response}
    if call_id and not _GENERATED_ID.fullmatch(call_id) and call_id in names:
        fr["id"] = call_id
    return {"functionResponse": fr}


def _contents(
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents) with same-role turns merged."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        role = msg.get("role")
        if role in ("system", "developer"):
            text = _text_of(msg.get("content"), where)
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            parts, gemini_role = _user_parts(msg.get("content"), where), "user"
        elif role == "assistant":
            text = _text_of(msg.get("content"), where)
            sig = _signature(msg)
            parts = [{"text": text}] if text or sig else []
            if sig:
                # Gemini's signature of a text answer (or of an empty part).
                parts[-1]["thoughtSignature"] = sig
            calls = _tool_calls(msg, where)
            for call, raw in zip(calls, msg.get("tool_calls") or [], strict=False):
                if raw.get("id"):
                    names[raw["id"]] = call["functionCall"]["name"]
            parts += calls
            gemini_role = "model"
        elif role == "tool":
            parts, gemini_role = [_function_response(msg, names, where)], "user"
        elif role == "function":
            legacy = {**msg, "tool_call_id": None}
            parts, gemini_role = [_function_response(legacy, names, where)], "user"
        else:
            raise _refuse(where + ".role", f"role '{role}'")
        if not parts:
            continue
        if contents and contents[-1]["role"] == gemini_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": gemini_role, "parts": parts})
    return system, contents


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
            raise _invalid("tool_choice", f"unknown value '{choice}'")
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
        raise _invalid("tool_choice.function.name", "is required")
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
            raise _invalid("extra_body", "must be an object")
        for key in extra:
            if key != "google":
                raise _refuse(f"extra_body.{key}")
    prefix = "google" if body.get("google") is not None else "extra_body.google"
    google = _google_options(body)
    if not isinstance(google, dict):
        raise _invalid(prefix, "must be an object")
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


def _upstream_error(payload: dict[str, Any], provider: str) -> UpstreamError:
    err = payload.get("error")
    msg = err.get("message") if isinstance(err, dict) else str(err)
    code = err.get("code") if isinstance(err, dict) else None
    # Gemini's own code keeps its meaning: 429/5xx retry, a 4xx is final.
    return UpstreamError(
        f"{provider}: {msg}",
        provider=provider,
        upstream_status=code if isinstance(code, int) and code >= 400 else 502,
    )


# -- Translation --------------------------------------------------------------


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


class ChunkTranslator:
    """Gemini stream events (whole GenerateContentResponse objects) -> chunks.

    feed() returns the chunks for one event; finish() the closing ones (the
    usage chunk when asked for) once the stream has ended.
    """

    def __init__(
        self,
        model: str,
        created: int,
        *,
        include_usage: bool = False,
        provider: str = PROVIDER,
    ) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self.provider = provider
        self.id: str | None = None
        self.usage: dict[str, Any] | None = None
        self._calls: dict[int, int] = {}  # candidate index -> tool calls so far
        self._finished: set[int] = set()
        self._signed: set[int] = set()  # candidates whose text signature went out
        self._rid = ""

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        if "error" in event and "candidates" not in event:
            raise _upstream_error(event, self.provider)
        if self.id is None:
            self._rid = event.get("responseId") or ""
            self.id = _completion_id(event)
        self.model = event.get("modelVersion") or self.model
        if event.get("usageMetadata"):
            self.usage = event["usageMetadata"]
        out: list[dict[str, Any]] = []
        for pos, cand in enumerate(event.get("candidates") or []):
            out += self._candidate(cand.get("index", pos), cand)
        if not event.get("candidates") and (event.get("promptFeedback") or {}).get(
            "blockReason"
        ):
            out.append(self._chunk(0, {"role": "assistant", "content": ""}))
            out.append(self._chunk(0, {}, "content_filter"))
            self._finished.add(0)
        return out

    def finish(self) -> list[dict[str, Any]]:
        if not self._finished:
            raise UpstreamError(
                f"{self.provider}: stream ended before a finish reason",
                provider=self.provider,
                upstream_status=502,
            )
        if not self.include_usage:
            return []
        usage = map_usage(self.usage)
        return [oai.usage_chunk(self.id, self.model, self.created, usage)]

    def _candidate(self, index: int, cand: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        if index not in self._calls:
            self._calls[index] = 0
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        for part in (cand.get("content") or {}).get("parts") or []:
            sig = part.get("thoughtSignature")
            if "functionCall" in part:
                fc = part["functionCall"]
                n = self._calls[index]
                call = _tool_call(fc, _call_id(self._rid, index, n, fc), sig)
                self._calls[index] = n + 1
                out.append(self._chunk(index, {"tool_calls": [{"index": n, **call}]}))
            elif (
                "text" in part or "thought" in part or set(part) == {"thoughtSignature"}
            ):
                delta: dict[str, Any] = {}
                if part.get("text"):
                    key = "reasoning_content" if part.get("thought") else "content"
                    delta[key] = part["text"]
                # One text signature per answer, as in translate_response: a
                # client folding deltas would concatenate a second one.
                if sig and index not in self._signed:
                    delta["extra_content"] = _google_extra(sig)
                    self._signed.add(index)
                if delta:
                    out.append(self._chunk(index, delta))
            else:
                raise _unreadable(part)
        reason = cand.get("finishReason")
        if reason:
            finish = map_finish_reason(reason, self._calls[index] > 0)
            out.append(self._chunk(index, {}, finish))
            self._finished.add(index)
        return out

    def _chunk(
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        return oai.chunk(self.id, self.model, self.created, delta, finish, index)


def translate_embeddings_request(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI embeddings request -> a Gemini batchEmbedContents body."""
    for key, value in body.items():
        if value is not None and key not in (
            "model",
            "input",
            "dimensions",
            "encoding_format",
            "user",
        ):
            raise _refuse(key)
    inputs = body.get("input")
    if isinstance(inputs, str):
        inputs = [inputs]
    if not inputs or not all(isinstance(x, str) for x in inputs):
        raise _refuse("input", "token arrays cannot be embedded; send text")
    path = _model_path(model)
    requests_ = []
    for text in inputs:
        req: dict[str, Any] = {"model": path, "content": {"parts": [{"text": text}]}}
        if body.get("dimensions") is not None:
            req["outputDimensionality"] = body["dimensions"]
        requests_.append(req)
    return {"requests": requests_}


def translate_embeddings_response(
    native: dict[str, Any], *, model: str, encoding_format: str | None = None
) -> dict[str, Any]:
    """batchEmbedContents answer -> OpenAI embeddings list (Gemini counts no tokens)."""
    data = []
    for i, emb in enumerate(native.get("embeddings") or []):
        values = emb.get("values") or []
        vector: Any = values
        if encoding_format == "base64":
            packed = struct.pack(f"<{len(values)}f", *values)
            vector = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


# -- Public API ---------------------------------------------------------------


def _post(dep: Deployment, call: Any, *args: Any, **kw: Any) -> Any:
    """Run one transport call; Gemini's 400 for a bad key is an auth failure."""
    try:
        return call(*args, **kw)
    except UpstreamError as err:
        # Gemini answers 400 INVALID_ARGUMENT (API_KEY_INVALID) for a wrong key:
        # the gateway's key is at fault, not the client's request.
        if err.upstream_status == 400 and "API key not valid" in err.message:
            raise UpstreamError(
                f"{dep.provider}: authentication with the provider failed: "
                "API key not valid",
                upstream_status=401,
                provider=dep.provider,
            ) from err
        raise


def chat(
    dep: Deployment, session: requests.Session, body: dict[str, Any]
) -> dict[str, Any]:
    native = translate_request(body)
    answer = _post(
        dep,
        http.post_json,
        session,
        f"{dep.base_url}/{_model_path(dep.model)}:generateContent",
        native,
        headers=_headers(dep),
        timeout=dep.timeout,
        provider=dep.provider,
    )
    return translate_response(answer, model=dep.model, created=int(time.time()))


def chat_stream(
    dep: Deployment, session: requests.Session, body: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    native = translate_request(body)
    lines = _post(
        dep,
        http.post_stream,
        session,
        f"{dep.base_url}/{_model_path(dep.model)}:streamGenerateContent?alt=sse",
        native,
        headers=_headers(dep, "text/event-stream"),
        timeout=dep.timeout,
        provider=dep.provider,
    )
    translator = ChunkTranslator(
        dep.model,
        int(time.time()),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        provider=dep.provider,
    )
    return _read_chunks(lines, translator)


def embeddings(
    dep: Deployment, session: requests.Session, body: dict[str, Any]
) -> dict[str, Any]:
    native = translate_embeddings_request(body, dep.model)
    answer = _post(
        dep,
        http.post_json,
        session,
        f"{dep.base_url}/{_model_path(dep.model)}:batchEmbedContents",
        native,
        headers=_headers(dep),
        timeout=dep.timeout,
        provider=dep.provider,
    )
    return translate_embeddings_response(
        answer, model=dep.model, encoding_format=body.get("encoding_format")
    )


def _read_chunks(
    lines: Iterator[bytes], translator: ChunkTranslator
) -> Iterator[dict[str, Any]]:
    provider = translator.provider
    try:
        for event in sse.parse(lines):
            payload = sse.event_json(event, provider)
            if not isinstance(payload, dict):
                raise UpstreamError(
                    f"{provider}: malformed stream event",
                    provider=provider,
                    upstream_status=502,
                )
            yield from translator.feed(payload)
        yield from translator.finish()
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
