"""Server-sent events framing, pure: parse upstream lines (read() also closes
them when done), encode our events."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from crabllm_sync.errors import UpstreamError

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"


@dataclass(frozen=True, slots=True)
class Event:
    data: str
    event: str | None = None


def event_json(event: Event, provider: str) -> Any:
    """An upstream event's JSON data; malformed JSON is the provider's 502."""
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"{provider}: malformed stream event",
            provider=provider,
            upstream_status=502,
        ) from None


def read(lines: Iterator[bytes]) -> Iterator[Event]:
    """parse() an upstream body's lines, closing them however the reading
    ends, so the connection is released (or closed, if unread) at once."""
    try:
        yield from parse(lines)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()


def parse(lines: Iterable[bytes | str]) -> Iterator[Event]:
    """Group SSE lines into events (multi-line data joined by newlines).

    Works on bytes and decodes once per event: this runs for every chunk of
    every stream, and decoding and splitting each line as text cost more than
    the JSON parse that follows (tests/unit/test_sse.py checks it against a
    line-by-line reading of the SSE rules).
    """
    data: list[bytes] = []
    event: str | None = None
    for raw in lines:
        line = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
        line = line.rstrip(b"\r\n")
        if line.startswith(b"data:"):
            data.append(line[6:] if line.startswith(b" ", 5) else line[5:])
            continue
        if not line:
            if data:
                yield Event(_text(data), event)
            data, event = [], None
            continue
        if line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            event = value.decode("utf-8", "replace")
    if data:
        yield Event(_text(data), event)


def _text(data: list[bytes]) -> str:
    return (data[0] if len(data) == 1 else b"\n".join(data)).decode("utf-8", "replace")


def encode(payload: object) -> bytes:
    """One `data:` event carrying JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(name: str, payload: object) -> bytes:
    """A named event (Anthropic's framing: `event:` then `data:`)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
