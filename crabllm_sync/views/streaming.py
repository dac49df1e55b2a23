"""Streamed answers: the one loop that turns a relay into the bytes of the
client's format (formats/*: an Encoder per format)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from flask import Response

from crabllm_sync import sse, streams
from crabllm_sync.errors import GatewayError
from crabllm_sync.formats.chat import ChatEncoder
from crabllm_sync.pipeline import internal
from crabllm_sync.views.responses import sse_response

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway

log = logging.getLogger(__name__)


class Encoder(Protocol):
    def encode(self, batch: Sequence[Any], last: bool) -> bytes:
        """A batch of relayed items (`last`: the stream ended after them)."""

    def error(self, err: GatewayError) -> bytes:
        """The format's final error event."""


def stream_body(
    items: Iterator[Any], encoder: Encoder, *, keepalive: float | None = None
) -> Iterator[bytes]:
    """Items -> the format's events, or one final error event.

    Items that were ready together go out in one write (streams.paced). With
    `keepalive`, an SSE comment goes out after each `keepalive` seconds
    without an item (and a client that left is noticed then: see streams.py).
    Keep-alives are comments, not Anthropic's `event: ping`: comments are
    ignored by every SSE parser at any point, a ping before message_start is
    an order some clients refuse (an upstream's own pings still pass through).
    """
    batches = streams.paced(items, keepalive)
    try:
        for batch in batches:
            if batch.is_pause:
                yield sse.KEEPALIVE
                continue
            data = encoder.encode(batch, batch.last)
            if data:
                yield data
    except Exception as exc:
        # Headers are gone: the failure is the stream's last event.
        yield encoder.error(internal(exc))
        return
    finally:
        # paced() closes `items` from its reader; closing here would race it.
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def sse_stream(
    gw: Gateway, ctx: RequestContext, items: Iterator[Any], encoder: Encoder
) -> Response:
    """A relayed stream as the client's SSE response: the format's events,
    with keep-alives every [routing] keepalive_seconds of silence."""
    keepalive = gw.config.routing.keepalive_seconds
    return sse_response(stream_body(items, encoder, keepalive=keepalive), ctx.headers)


def openai_events(
    chunks: Iterator[dict[str, Any]], *, keepalive: float | None = None
) -> Iterator[bytes]:
    """Chat chunks -> `data:` events, `[DONE]` at the end."""
    return stream_body(chunks, ChatEncoder(), keepalive=keepalive)
