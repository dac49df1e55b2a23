"""W3C trace context on upstream requests: providers/http.py passes every
outgoing request's headers through outgoing(). A no-op until tracing is on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping

Inject = Callable[[MutableMapping[str, str]], None]

_inject: Inject | None = None


def enable(inject: Inject) -> None:
    """Add what `inject` writes (traceparent of the current span) from now on."""
    global _inject
    _inject = inject


def outgoing(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers`, plus the current span's traceparent when tracing is on."""
    if _inject is None:
        return headers
    out = dict(headers)
    _inject(out)
    return out
