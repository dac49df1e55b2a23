"""A streamed chat completion as tests read it off the gateway: raw SSE lines.

For what the SDKs cannot show: the data payloads as sent, the final error
event, an early hang-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

DATA = "data: "


def streamed(model: str, content: str = "x") -> dict[str, Any]:
    """A one-message chat request body asking for a stream."""
    return {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
    }


@contextmanager
def open_stream(
    url: str, body: dict[str, Any], timeout: float = 10
) -> Iterator[httpx.Response]:
    """POST {url}/v1/chat/completions and hold the response open while inside."""
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json=body, timeout=timeout
    ) as resp:
        yield resp


def data_lines(url: str, body: dict[str, Any], timeout: float = 10) -> list[str]:
    """The payload of every `data:` line of a 200 stream, as text, in order."""
    with open_stream(url, body, timeout) as resp:
        assert resp.status_code == 200
        return [ln[len(DATA) :] for ln in resp.iter_lines() if ln.startswith(DATA)]
