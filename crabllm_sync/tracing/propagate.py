"""W3C trace context on upstream requests: providers/http.py passes every
outgoing request's headers through outgoing(), which adds the traceparent
(and the client's tracestate) of the upstream attempt running in this
greenlet, if tracing set one. Imports nothing of OpenTelemetry."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar, Token

_current: ContextVar[tuple[str, str] | None] = ContextVar(
    "crabllm_traceparent", default=None
)


def enter(traceparent: str, tracestate: str = "") -> Token[tuple[str, str] | None]:
    """Send these with the upstream requests made until leave(token)."""
    return _current.set((traceparent, tracestate))


def leave(token: Token[tuple[str, str] | None]) -> None:
    _current.reset(token)


def outgoing(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers`, plus the current attempt's traceparent when there is one."""
    current = _current.get()
    if current is None:
        return headers
    out = dict(headers)
    out["traceparent"] = current[0]
    if current[1]:
        out["tracestate"] = current[1]
    return out
