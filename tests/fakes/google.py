"""Gemini's wire format: generateContent, streamGenerateContent?alt=sse, embeddings.

A small scripted "model": it echoes text, calls the first declared function
when tools are on, answers from function responses, thinks when asked, and
checks requests the way Gemini does (API key, request shape against the
google-genai SDK's own types, schema fields the Developer API rejects, and
thought signatures on a `gemini-3*` model's function calls).
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

import pydantic
from google.genai import types

from tests.upstream import Recorded, Reply, Upstream

API_KEY = "g-key"
GENERATE = r"/models/[^/]+:generateContent$"
STREAM = r"/models/[^/]+:streamGenerateContent$"
EMBED = r"/models/[^/]+:batchEmbedContents$"

# Top-level request fields and the SDK type each must validate as.
_REQUEST_FIELDS: dict[str, Any] = {
    "contents": list[types.Content],
    "systemInstruction": types.Content,
    "tools": list[types.Tool],
    "toolConfig": types.ToolConfig,
    "generationConfig": types.GenerationConfig,
    "safetySettings": list[types.SafetySetting],
    "cachedContent": str,
}
# Schema fields the SDK models but the Gemini Developer API rejects.
_REJECTED_SCHEMA_KEYS = {"additionalProperties", "$ref", "$defs", "ref", "defs"}
_SCHEMA_TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT"}
_MISSING_SIGNATURE = (
    "Function call is missing a thought_signature in functionCall parts. This is "
    "required for tools to work correctly, and missing thought_signature may lead "
    "to degraded model performance. Additional data, function call `{name}` , "
    "position {pos}. please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)


def error(code: int, message: str, status: str) -> Reply:
    """Gemini's error body."""
    return Reply(
        status=code,
        json={"error": {"code": code, "message": message, "status": status}},
    )


def signature_for(name: str) -> str:
    return base64.b64encode(f"sig:{name}".encode()).decode()


class GeminiFake:
    """State of one fake Gemini (counters for response ids)."""

    def __init__(self, api_key: str = API_KEY) -> None:
        self.api_key = api_key
        self._ids = itertools.count(1)
        self.upstream = Upstream(
            {GENERATE: self.generate, STREAM: self.stream, EMBED: self.embed}
        )

    # -- checks ---------------------------------------------------------------

    def check(self, rec: Recorded) -> Reply | None:
        """The error Gemini would answer for this request, or None."""
        if rec.headers.get("x-goog-api-key") != self.api_key:
            return error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
            )
        body = rec.json
        if not isinstance(body, dict):
            return error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        for key, value in body.items():
            if key not in _REQUEST_FIELDS:
                return error(
                    400,
                    f'Invalid JSON payload received. Unknown name "{key}": '
                    "Cannot find field.",
                    "INVALID_ARGUMENT",
                )
            try:
                pydantic.TypeAdapter(_REQUEST_FIELDS[key]).validate_python(value)
            except pydantic.ValidationError as exc:
                return error(
                    400,
                    f"Invalid value at '{key}': {exc.errors()[0]['msg']}",
                    "INVALID_ARGUMENT",
                )
        for decl in (
            d for t in body.get("tools", []) for d in t.get("functionDeclarations", [])
        ):
            problem = _schema_problem(decl.get("parameters"), "parameters")
            if problem:
                return error(400, problem, "INVALID_ARGUMENT")
        schema = body.get("generationConfig", {}).get("responseSchema")
        problem = _schema_problem(schema, "responseSchema")
        if problem:
            return error(400, problem, "INVALID_ARGUMENT")
        if not body.get("contents"):
            return error(
                400,
                "* GenerateContentRequest.contents: contents is not specified",
                "INVALID_ARGUMENT",
            )
        if rec.path.split("/")[-1].startswith("gemini-3"):
            problem = _signature_problem(body["contents"])
            if problem:
                return error(400, problem, "INVALID_ARGUMENT")
        return None

    # -- the model ------------------------------------------------------------

    def answer(self, rec: Recorded) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """(parts, usageMetadata) this fake model answers with."""
        body = rec.json
        contents = body["contents"]
        last = contents[-1]["parts"]
        responses = [p["functionResponse"] for p in last if "functionResponse" in p]
        cfg = body.get("generationConfig", {})
        # Proto JSON takes both spellings; the SDK sends include_thoughts.
        tc = cfg.get("thinkingConfig") or {}
        thinking = tc.get("includeThoughts") or tc.get("include_thoughts")
        decls = [
            d for t in body.get("tools", []) for d in t.get("functionDeclarations", [])
        ]
        mode = (
            (body.get("toolConfig") or {}).get("functionCallingConfig", {}).get("mode")
        )
        parts: list[dict[str, Any]] = []
        if thinking:
            parts.append({"text": "Let me think.", "thought": True})
        user_text = " ".join(p.get("text", "") for p in last if "text" in p)
        if responses:
            text = "Result: " + "; ".join(
                f"{r['name']}={_compact(r['response'])}" for r in responses
            )
            parts.append({"text": text})
        elif decls and mode != "NONE":
            allowed = (
                (body.get("toolConfig") or {})
                .get("functionCallingConfig", {})
                .get("allowedFunctionNames")
            )
            decl = next(d for d in decls if not allowed or d["name"] in allowed)
            params = decl.get("parameters", {})
            args = {
                name: user_text
                for name in params.get("required", [])
                if params["properties"][name].get("type") == "STRING"
                and "enum" not in params["properties"][name]
            }
            part: dict[str, Any] = {
                "functionCall": {"name": decl["name"], "args": args}
            }
            if thinking or rec.path.split("/")[-1].startswith("gemini-3"):
                part["thoughtSignature"] = signature_for(decl["name"])
            parts.append(part)
        else:
            parts.append({"text": f"echo: {user_text}"})
        prompt = sum(
            len(p.get("text", "").split()) + 2 * ("functionResponse" in p)
            for c in contents
            for p in c["parts"]
        ) + sum(
            len(p.get("text", "").split())
            for p in (body.get("systemInstruction") or {}).get("parts", [])
        )
        out_tokens = sum(
            len(p.get("text", "").split()) for p in parts if not p.get("thought")
        ) + 3 * sum("functionCall" in p for p in parts)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": out_tokens,
            "totalTokenCount": prompt + out_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
        }
        if thinking:
            usage["thoughtsTokenCount"] = 5
            usage["totalTokenCount"] += 5
        return parts, usage

    def generate(self, rec: Recorded) -> Reply:
        problem = self.check(rec)
        if problem:
            return problem
        parts, usage = self.answer(rec)
        has_call = any("functionCall" in p for p in parts)
        return Reply(
            json={
                "candidates": [
                    {
                        "content": {"parts": parts, "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": usage,
                "modelVersion": _model(rec),
                "responseId": f"resp{next(self._ids)}{'c' if has_call else ''}",
            }
        )

    def stream(self, rec: Recorded) -> Reply:
        if rec.query.get("alt") != "sse":
            return error(400, "stream needs alt=sse in this fake", "INVALID_ARGUMENT")
        problem = self.check(rec)
        if problem:
            return problem
        parts, usage = self.answer(rec)
        has_call = any("functionCall" in p for p in parts)
        rid = f"resp{next(self._ids)}{'c' if has_call else ''}"
        return Reply(
            events=stream_events(parts, usage, model=_model(rec), response_id=rid)
        )

    def embed(self, rec: Recorded) -> Reply:
        problem = None
        if rec.headers.get("x-goog-api-key") != self.api_key:
            problem = error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
            )
        if problem:
            return problem
        out = []
        for req in rec.json["requests"]:
            dims = req.get("outputDimensionality", 4)
            words = len(req["content"]["parts"][0]["text"].split())
            out.append(
                {"values": [round(0.1 * (i + 1) * words, 3) for i in range(dims)]}
            )
        return Reply(json={"embeddings": out})


def stream_events(
    parts: list[dict[str, Any]],
    usage: dict[str, Any],
    *,
    model: str,
    response_id: str,
    finish: str = "STOP",
) -> list[dict[str, Any]]:
    """Gemini's SSE events for an answer: text split in pieces, usage on each."""
    base = {"modelVersion": model, "responseId": response_id}
    partial = {
        "promptTokenCount": usage["promptTokenCount"],
        "totalTokenCount": usage["promptTokenCount"],
    }
    events: list[dict[str, Any]] = []
    for part in parts:
        pieces: list[dict[str, Any]] = [part]
        text = part.get("text")
        if text and " " in text:
            words = text.split(" ")
            pieces = [
                {**part, "text": (w if i == 0 else " " + w)}
                for i, w in enumerate(words)
            ]
        for piece in pieces:
            events.append(
                {
                    "candidates": [
                        {"content": {"parts": [piece], "role": "model"}, "index": 0}
                    ],
                    "usageMetadata": partial,
                    **base,
                }
            )
    events.append(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": ""}], "role": "model"},
                    "finishReason": finish,
                    "index": 0,
                }
            ],
            "usageMetadata": usage,
            **base,
        }
    )
    return events


def make_fake(api_key: str = API_KEY) -> GeminiFake:
    return GeminiFake(api_key)


def _model(rec: Recorded) -> str:
    return rec.path.split("/models/")[-1].split(":")[0]


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _schema_problem(schema: Any, where: str) -> str | None:
    if schema is None:
        return None
    if not isinstance(schema, dict):
        return f"{where}: schema must be an object"
    for key in schema:
        if key in _REJECTED_SCHEMA_KEYS or key.startswith("$"):
            return (
                f'Invalid JSON payload received. Unknown name "{key}" '
                f"at '{where}': Cannot find field."
            )
    kind = schema.get("type")
    if kind is not None and kind not in _SCHEMA_TYPES:
        return (
            f"Invalid value at '{where}.type' "
            f'(type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "{kind}"'
        )
    if kind == "OBJECT" and "properties" in schema and not schema["properties"]:
        return (
            f"* GenerateContentRequest.{where}.properties: "
            "should be non-empty for OBJECT type"
        )
    fmt = schema.get("format")
    if kind == "STRING" and fmt not in (None, "enum", "date-time"):
        return (
            f"* GenerateContentRequest.{where}.format: only 'enum' and "
            "'date-time' are supported for STRING type"
        )
    for name, sub in (schema.get("properties") or {}).items():
        problem = _schema_problem(sub, f"{where}.properties[{name}]")
        if problem:
            return problem
    for i, sub in enumerate(schema.get("anyOf") or []):
        problem = _schema_problem(sub, f"{where}.anyOf[{i}]")
        if problem:
            return problem
    return _schema_problem(schema.get("items"), f"{where}.items")


def _signature_problem(contents: list[dict[str, Any]]) -> str | None:
    """Gemini 3: each step's first functionCall in this turn needs its signature."""
    start = 0
    for i, content in enumerate(contents):
        if content["role"] == "user" and any("text" in p for p in content["parts"]):
            start = i
    for content in contents[start:]:
        if content["role"] != "model":
            continue
        calls = [p for p in content["parts"] if "functionCall" in p]
        if calls and calls[0].get("thoughtSignature") != signature_for(
            calls[0]["functionCall"]["name"]
        ):
            return _MISSING_SIGNATURE.format(
                name=calls[0]["functionCall"]["name"], pos=contents.index(content) + 1
            )
    return None
