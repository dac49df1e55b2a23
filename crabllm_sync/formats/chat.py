"""OpenAI chat completions: the canonical format itself.

The request and answer need no translation; a stream is relayed chunk by
chunk, with usage always asked of the upstream (so every stream is counted)
and taken out again when the client did not ask for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from crabllm_sync import errors, sse
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError, UpstreamError

FORMAT = "chat"


def answer_usage(response: Any) -> dict[str, Any] | None:
    """The usage of a chat completion (or embeddings) answer, if it has one."""
    usage = response.get("usage") if isinstance(response, dict) else None
    return usage if isinstance(usage, dict) else None


def stream_request(body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The upstream body of a streamed chat (usage always asked for), and
    whether the client asked for usage itself."""
    options = body.get("stream_options") or {}
    wants_usage = bool(options.get("include_usage"))
    return {**body, "stream_options": {**options, "include_usage": True}}, wants_usage


def unfinished(ctx: RequestContext) -> UpstreamError:
    """A stream that stopped before the model finished: the upstream failed."""
    provider = ctx.provider
    return UpstreamError(
        f"{provider}: the stream ended before the model finished",
        provider=provider,
        upstream_status=502,
    )


class ChatObserver:
    """Usage and finish detection over OpenAI chunks.

    A stream ends finished only when every choice that started sent a
    finish_reason; one that just stops is an upstream failure, never a quiet
    success.
    """

    hooks_see_items = True  # extensions' on_chunk gets every chunk passed on

    def __init__(self, ctx: RequestContext, wants_usage: bool) -> None:
        self.ctx = ctx
        self.wants_usage = wants_usage
        self.started: set[Any] = set()
        self.ended: set[Any] = set()
        self.failure: GatewayError | None = None  # chunks never carry one

    def first(self, chunk: dict[str, Any], provider: str) -> None:
        """Any first chunk opens the stream."""

    def feed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            self.started.add(index)
            if choice.get("finish_reason"):
                self.ended.add(index)
        usage = chunk.get("usage")
        if usage:
            self.ctx.usage = usage
        if self.wants_usage:
            return chunk
        if usage and not chunk.get("choices"):
            return None  # our own usage request; the client did not ask for it
        if "usage" in chunk:
            return {k: v for k, v in chunk.items() if k != "usage"}
        return chunk

    def end(self) -> None:
        if not self.ended or self.started - self.ended:
            raise unfinished(self.ctx)

    def interrupted(self) -> None:
        """The client left: usage is estimated from the chunks the hooks saw."""


class ChatEncoder:
    """Chunks -> `data:` events; `[DONE]` joins the write of the last batch."""

    def encode(self, batch: Sequence[dict[str, Any]], last: bool) -> bytes:
        data = b"".join([sse.encode(chunk) for chunk in batch])
        return data + sse.DONE if last else data

    def error(self, err: GatewayError) -> bytes:
        return sse.encode(errors.to_openai(err))
