"""Server-sent events framing, pure: parse upstream lines, encode our events."""

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


def parse(lines: Iterable[bytes | str]) -> Iterator[Event]:
    """Group SSE lines into events (multi-line data joined by newlines)."""
    data: list[str] = []
    event: str | None = None
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield Event("\n".join(data), event)
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield Event("\n".join(data), event)


def encode(payload: object) -> bytes:
    """One `data:` event carrying JSON."""
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def encode_event(name: str, payload: object) -> bytes:
    """A named event (Anthropic's framing: `event:` then `data:`)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"
