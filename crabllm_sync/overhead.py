"""The gateway's own time on each answer: `x-crabllm-overhead-ms` and the
crabllm_overhead_seconds histogram.

Overhead is the time from the start of the request to the moment its
response headers are ready, less the time spent waiting on upstream
attempts and the backoff between them (Gateway.route adds those to
ctx.upstream_seconds). A streamed answer's headers go out before its body,
so for a stream it is the overhead up to the first byte: the first upstream
item is read while routing, the rest of the stream is not counted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from flask import Flask, Response, g, has_request_context

from crabllm_sync.extensions import find
from crabllm_sync.extensions.metrics import MetricsExtension

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway

HEADER = "x-crabllm-overhead-ms"
_STARTED = "crabllm_started"
_CONTEXT = "crabllm_context"


def install(app: Flask, gw: Gateway) -> None:
    """Time every request of `app` and stamp its answer."""
    metrics = find(gw.extensions, MetricsExtension)

    def remember(ctx: RequestContext) -> None:
        # Called by Gateway.begin; `g` is per request, so is the context kept.
        if has_request_context():  # not when the gateway is used on its own
            setattr(g, _CONTEXT, ctx)

    gw.on_begin.append(remember)

    @app.before_request
    def start() -> None:
        setattr(g, _STARTED, time.monotonic())

    @app.after_request
    def stamp(response: Response) -> Response:
        started = g.get(_STARTED)
        if started is None:
            return response
        ctx: RequestContext | None = g.get(_CONTEXT)
        waited = ctx.upstream_seconds if ctx is not None else 0.0
        seconds = max(0.0, time.monotonic() - started - waited)
        response.headers[HEADER] = f"{seconds * 1000:.3f}"
        if ctx is not None and metrics is not None:
            metrics.metrics.overhead.labels(ctx.endpoint).observe(seconds)
        return response
