"""Prometheus metrics of one gateway, and their text exposition.

Under gunicorn each worker writes its samples to PROMETHEUS_MULTIPROC_DIR
(serving.py sets and cleans it before workers start) and /metrics adds up all
workers. Without that directory (tests, a single process) the metrics live in
this object's own registry; nothing is registered globally.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


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
        gauge_mode = {"multiprocess_mode": "livesum"} if self.multiproc_dir else {}
        self.active_streams = Gauge(
            "crabllm_active_streams",
            "Streams being relayed now.",
            registry=reg,
            **gauge_mode,
        )

    def render(self) -> bytes:
        """The Prometheus text exposition, summed over all workers."""
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
