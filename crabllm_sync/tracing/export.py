"""An OTLP/HTTP span exporter over otlp.py's encoder, run by the SDK's
BatchSpanProcessor in its own thread (a greenlet under gevent): never on a
request's path. A collector that answers 429, 502, 503 or 504, or cannot be
reached, is retried with a doubling delay within `timeout`; then the batch is
dropped (the processor's bounded queue is what holds spans meanwhile)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from crabllm_sync.tracing.otlp import Encoder

log = logging.getLogger(__name__)

RETRYABLE = frozenset({429, 502, 503, 504})


class OtlpHttpSpanExporter(SpanExporter):
    def __init__(
        self, endpoint: str, headers: Mapping[str, str], timeout: float
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self.headers = {**headers, "Content-Type": "application/x-protobuf"}
        self.session = requests.Session()
        self.encoder = Encoder()
        self._lock = threading.Lock()  # the encoder's cache: one batch at a time
        self._stopped = threading.Event()
        self._failing = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        if self._stopped.is_set() or not spans:
            return SpanExportResult.FAILURE if spans else SpanExportResult.SUCCESS
        with self._lock:
            data = self.encoder.encode(spans)
        deadline = time.monotonic() + self.timeout
        delay = 0.5
        while True:
            left = deadline - time.monotonic()
            try:
                r = self.session.post(
                    self.endpoint,
                    data=data,
                    headers=self.headers,
                    timeout=max(left, 0.1),
                )
                if r.status_code < 300:
                    if self._failing:
                        log.info("OTLP export to %s works again", self.endpoint)
                        self._failing = False
                    return SpanExportResult.SUCCESS
                retry, why = r.status_code in RETRYABLE, f"HTTP {r.status_code}"
            except requests.RequestException as exc:
                retry, why = True, type(exc).__name__
            if not retry or time.monotonic() + delay > deadline:
                break
            if self._stopped.wait(delay):
                break
            delay *= 2
        if not self._failing:  # once until it works again: not a line per batch
            log.warning(
                "OTLP export to %s failed (%s): %d spans dropped",
                self.endpoint,
                why,
                len(spans),
            )
            self._failing = True
        return SpanExportResult.FAILURE

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True

    def shutdown(self) -> None:
        self._stopped.set()
        self.session.close()
