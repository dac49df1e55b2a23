"""The request log: one record per finished request, written in batches.

on_response and on_error see every outcome (500s and 499s included); the
record goes to an in-process buffer that the shared BatchWriter flushes to
`audit_log` (and its rollups) off the request path. Records older than
`retention_days` are pruned by the flusher at most once per PRUNE_EVERY, a
chunk at a time with a yield between chunks, so a sweep never holds a
gevent worker (sqlite runs in C) or the database for long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import peewee

from crabllm_sync.audit.record import body_text, log_row
from crabllm_sync.audit.store import PRUNE_CHUNK, AuditStore
from crabllm_sync.config import AuditExtension
from crabllm_sync.extensions import Extension
from crabllm_sync.extensions.batching import BatchWriter

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0  # seconds between retention sweeps of one worker
DAY = 86400.0


class AuditLog(BatchWriter, Extension):
    name = "audit"

    def __init__(
        self,
        section: AuditExtension | None,
        store: AuditStore,
        redact: Callable[[str], str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        section = section or AuditExtension()
        super().__init__(
            "audit", self._store, section.flush_interval, section.batch_size
        )
        self.store = store
        self.section = section
        self.redact = redact
        self.clock = clock
        self._pruned_at = 0.0

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self.add(self._row(ctx, None, body, response))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self.add(self._row(ctx, error, None, None))

    def _row(
        self,
        ctx: RequestContext,
        error: GatewayError | None,
        body: dict[str, Any] | None,
        response: dict[str, Any] | None,
    ) -> dict[str, Any]:
        row = log_row(ctx, error)
        if self.section.bodies:
            cap = self.section.max_body_bytes
            row["request_body"] = body_text(body, self.redact, cap)
            row["response_body"] = body_text(response, self.redact, cap)
        return row

    def _store(
        self, rows: Sequence[dict[str, Any]], *, busy_timeout_ms: int | None = None
    ) -> None:
        self.store.insert(rows, busy_timeout_ms=busy_timeout_ms)
        now = self.clock()
        if now - self._pruned_at >= PRUNE_EVERY:
            self._pruned_at = now
            self.prune(now)

    def prune(self, now: float) -> int:
        """Delete records past retention; a failure is logged, retried next sweep."""
        before = now - self.section.retention_days * DAY
        n = 0
        try:
            while True:
                deleted = self.store.prune(before)
                n += deleted
                if deleted < PRUNE_CHUNK:
                    break
                time.sleep(0)  # let requests run between chunks
        except peewee.PeeweeException as exc:
            log.warning("audit: pruning old records failed: %s", exc)
            return n
        if n:
            log.info(
                "audit: pruned %d records older than %g days",
                n,
                self.section.retention_days,
            )
        return n
