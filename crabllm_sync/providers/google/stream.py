"""Gemini SSE stream (whole GenerateContentResponse events) -> OpenAI chunks.

Pure: ChunkTranslator and the reader around it; no transport call here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from crabllm_sync import sse
from crabllm_sync.errors import UpstreamError
from crabllm_sync.providers.google.messages import PROVIDER
from crabllm_sync.providers.google.response import (
    _call_id,
    _completion_id,
    _google_extra,
    _tool_call,
    _unreadable,
    map_finish_reason,
    map_usage,
)
from crabllm_sync.wire import completions as oai


def upstream_error(payload: dict[str, Any], provider: str) -> UpstreamError:
    err = payload.get("error")
    msg = err.get("message") if isinstance(err, dict) else str(err)
    code = err.get("code") if isinstance(err, dict) else None
    # Gemini's own code keeps its meaning: 429/5xx retry, a 4xx is final.
    return UpstreamError(
        f"{provider}: {msg}",
        provider=provider,
        upstream_status=code if isinstance(code, int) and code >= 400 else 502,
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
            raise upstream_error(event, self.provider)
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


def read_events(lines: Iterator[bytes], provider: str) -> Iterator[dict[str, Any]]:
    """Gemini's SSE lines -> its events (GenerateContentResponse objects)."""
    try:
        for event in sse.parse(lines):
            payload = sse.event_json(event, provider)
            if not isinstance(payload, dict):
                raise UpstreamError(
                    f"{provider}: malformed stream event",
                    provider=provider,
                    upstream_status=502,
                )
            yield payload
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


def _read_chunks(
    lines: Iterator[bytes], translator: ChunkTranslator
) -> Iterator[dict[str, Any]]:
    events = read_events(lines, translator.provider)
    try:
        for payload in events:
            yield from translator.feed(payload)
        yield from translator.finish()
    finally:
        events.close()
