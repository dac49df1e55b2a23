"""Feeds crabllm_sync.metrics from the request hooks (counts, latency, cost)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crabllm_sync.errors import UpstreamError
from crabllm_sync.extensions import Extension, key_name
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.metrics import Metrics

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

_STREAMING = "metrics.streaming"
# ctx.state key: the features a bridged request left out (views/responses_api.py).
OMITTED = "omitted"


class MetricsExtension(Extension):
    name = "metrics"

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        if ctx.stream:
            ctx.state[_STREAMING] = True
            self.metrics.active_streams.inc()

    def _finish(self, ctx: RequestContext) -> None:
        m = self.metrics
        if ctx.state.pop(_STREAMING, False):
            m.active_streams.dec()
        m.requests.labels(ctx.endpoint, ctx.model or "-", str(ctx.status)).inc()
        m.latency.labels(ctx.endpoint).observe(time.monotonic() - ctx.started)
        for feature in ctx.state.get(OMITTED, ()):
            m.omitted.labels(ctx.endpoint, feature).inc()

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self._finish(ctx)
        m = self.metrics
        if ctx.cache_hit:
            m.cache_hits.labels(ctx.endpoint).inc()
        charge = charge_of(ctx)
        u = charge.usage
        for kind, n in (
            ("input", u.input),
            ("cache_read", u.cache_read),
            ("cache_write", u.cache_write),
            ("output", u.output),
        ):
            if n:
                m.tokens.labels(ctx.model, kind).inc(n)
        if charge.cost_nanos:
            m.cost.labels(key_name(ctx.principal), ctx.model).inc(charge.cost_nanos)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self._finish(ctx)
        if isinstance(error, UpstreamError):
            self.metrics.upstream_errors.labels(
                error.provider or ctx.provider or "-"
            ).inc()
