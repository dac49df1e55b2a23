"""Span identities without the SDK's Tracer: ids, the sampling decision,
W3C traceparent in and out, and the finished span as the SDK's ReadableSpan.

The SDK's Tracer builds a live Span per start_span (a lock, bounded
attribute containers checked value by value, a sampler call, context
objects): ~17 us a span before any export. A request's spans here are
recorded as a few ints while it runs and become one ReadableSpan, with all
its attributes at once, when they end; the SDK's BatchSpanProcessor takes it
from there. The sampling is the SDK's ParentBased(TraceIdRatioBased(ratio)):
a client's sampled flag is followed, a new trace is kept when the low 64 bits
of its id fall under ratio x 2^64.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, TraceFlags, TraceState

_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?"
)
_LOW64 = (1 << 64) - 1
SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSET = Status()


@dataclass(slots=True)
class Started:
    """A span in progress: its identity and start (ns since the epoch)."""

    trace_id: int
    span_id: int
    sampled: bool
    start: int
    state: TraceState | None = None  # the client's tracestate, passed on
    _context: SpanContext | None = None

    def traceparent(self) -> str:
        flags = "01" if self.sampled else "00"
        return f"00-{self.trace_id:032x}-{self.span_id:016x}-{flags}"

    def tracestate(self) -> str:
        return self.state.to_header() if self.state else ""

    def context(self) -> SpanContext:
        """The span's SpanContext (made once: its attempts' parent, and its own)."""
        if self._context is None:
            self._context = SpanContext(
                self.trace_id,
                self.span_id,
                is_remote=False,
                trace_flags=SAMPLED,
                trace_state=self.state,
            )
        return self._context


class Sampler:
    def __init__(self, ratio: float) -> None:
        self.bound = round(ratio * (_LOW64 + 1))

    def root(self, start: int, parent: SpanContext | None) -> Started:
        """The request's span: in the client's trace when it sent one."""
        if parent is not None:
            return Started(
                parent.trace_id,
                random.getrandbits(64) or 1,
                parent.trace_flags.sampled,
                start,
                parent.trace_state,
            )
        trace_id = random.getrandbits(128) or 1
        return Started(
            trace_id,
            random.getrandbits(64) or 1,
            (trace_id & _LOW64) < self.bound,
            start,
        )


def child(parent: Started, start: int) -> Started:
    return Started(
        parent.trace_id,
        random.getrandbits(64) or 1,
        parent.sampled,
        start,
        parent.state,
    )


def parse_traceparent(value: str, tracestate: str | None) -> SpanContext | None:
    """The client's span context from its W3C headers, or None if malformed."""
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = TraceState.from_header([tracestate]) if tracestate else None
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(flags_hex, 16) & TraceFlags.SAMPLED),
        trace_state=state,
    )


class Finished(ReadableSpan):
    """A ReadableSpan that also carries its fields plain, in one tuple:
    otlp.py encodes from `wire` without the properties' calls."""

    wire: tuple = ()


def finished(
    span: Started,
    parent: SpanContext | None,
    name: str,
    kind: SpanKind,
    attributes: dict[str, Any],
    end: int,
    status: Status,
    resource: Any,
    scope: Any,
) -> Finished:
    out = Finished(
        name=name,
        context=span.context(),
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=kind,
        status=status,
        start_time=span.start,
        end_time=end,
        instrumentation_scope=scope,
    )
    out.wire = (
        span.trace_id,
        span.span_id,
        parent.span_id if parent is not None else 0,
        parent is not None and parent.is_remote,
        span.tracestate(),
        name,
        kind.value + 1,  # OTLP's SpanKind counts from UNSPECIFIED = 0
        span.start,
        end,
        attributes,
        status.status_code.value,
        status.description or "",
    )
    return out
