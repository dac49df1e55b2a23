"""Prometheus metrics of one gateway, and their text exposition.

Under gunicorn each worker writes its samples to PROMETHEUS_MULTIPROC_DIR
(serving.py sets and cleans it before workers start) and /metrics adds up all
workers. Without that directory (tests, a single process) the metrics live in
this object's own registry; nothing is registered globally. Deployment
health is read from shared storage at scrape time (health_exposition), so
every worker answers the same values and nothing is summed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

if TYPE_CHECKING:
    from crabllm_sync.health import DeploymentHealth

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own time per request (x-crabllm-overhead-ms): milliseconds.
OVERHEAD_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    def __init__(self, multiproc_dir: str | None = None) -> None:
        # prometheus_client itself reads this variable to pick its value store.
        self.multiproc_dir = multiproc_dir or os.environ.get(MULTIPROC_ENV) or None
        self.registry = CollectorRegistry(auto_describe=True)
        reg = None if self.multiproc_dir else self.registry
        self.requests = Counter(
            "crabllm_requests",
            "Requests answered, by endpoint, model and HTTP status.",
            ["endpoint", "model", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "crabllm_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.overhead = Histogram(
            "crabllm_overhead_seconds",
            "Time spent in the gateway, not upstream, up to the response "
            "headers (x-crabllm-overhead-ms).",
            ["endpoint"],
            buckets=OVERHEAD_BUCKETS,
            registry=reg,
        )
        self.tokens = Counter(
            "crabllm_tokens",
            "Tokens by model and type (input, cache_read, cache_write, output).",
            ["model", "type"],
            registry=reg,
        )
        self.cost = Counter(
            "crabllm_cost_nanos",
            "Cost in nanodollars (USD x 1e9) by key and model; exact integers.",
            ["key", "model"],
            registry=reg,
        )
        self.upstream_errors = Counter(
            "crabllm_upstream_errors",
            "Requests that failed upstream, by provider ('-' when several failed).",
            ["provider"],
            registry=reg,
        )
        self.cache_hits = Counter(
            "crabllm_cache_hits",
            "Requests answered from the response cache.",
            ["endpoint"],
            registry=reg,
        )
        self.omitted = Counter(
            "crabllm_omitted_features",
            "Request features a bridged model left out (x-crabllm-omitted), "
            "by endpoint and feature.",
            ["endpoint", "feature"],
            registry=reg,
        )
        gauge_mode = {"multiprocess_mode": "livesum"} if self.multiproc_dir else {}
        self.active_streams = Gauge(
            "crabllm_active_streams",
            "Streams being relayed now.",
            registry=reg,
            **gauge_mode,
        )

    def render(self, health: Sequence[DeploymentHealth] = ()) -> bytes:
        """The Prometheus text exposition, summed over all workers, plus the
        deployment health gauges of `health` (Health.snapshot())."""
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            body = generate_latest(registry)
        else:
            body = generate_latest(self.registry)
        return body + health_exposition(health)


class _Snapshot:
    """A one-off collector over a health snapshot (no state kept between scrapes)."""

    def __init__(self, health: Sequence[DeploymentHealth]) -> None:
        self.health = health

    def collect(self) -> list[GaugeMetricFamily]:
        from crabllm_sync.health import CLOSED, HALF_OPEN, OPEN, UNKNOWN

        state = GaugeMetricFamily(
            "crabllm_deployment_state",
            "Circuit breaker of each deployment: 1 for its current state "
            "(closed, open, half-open, unknown), 0 for the others.",
            labels=["provider", "model", "state"],
        )
        failures = GaugeMetricFamily(
            "crabllm_deployment_consecutive_failures",
            "Consecutive transient failures of each deployment.",
            labels=["provider", "model"],
        )
        for h in self.health:
            for name in (CLOSED, OPEN, HALF_OPEN, UNKNOWN):
                state.add_metric([h.provider, h.model, name], int(h.state == name))
            failures.add_metric([h.provider, h.model], h.consecutive_failures)
        return [state, failures]


def health_exposition(health: Sequence[DeploymentHealth]) -> bytes:
    """Deployment health as Prometheus gauges (empty when there is none)."""
    if not health:
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(health))
    return generate_latest(registry)
