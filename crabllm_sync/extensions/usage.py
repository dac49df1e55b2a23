"""One usage record per request, written to the `usage` table in batches
through the shared BatchWriter (extensions/batching.py): requests only append
to a buffer, a background flusher writes it, close() writes the rest. Each
batch updates the hourly and daily rollups in its own transaction (db.py).

With `[storage] usage_retention_days`, raw rows past it are pruned by the
flusher: one worker of all instances at a time (a claim in `ledger_jobs`),
at most once per PRUNE_EVERY, PRUNE_CHUNK rows per statement with a yield
between statements. Rollups are kept, so totals of old periods stay right.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import peewee

from crabllm_sync.config import Config, UsageExtension
from crabllm_sync.db import Database
from crabllm_sync.extensions import Extension
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.extensions.batching import (  # noqa: F401 (re-exported)
    CLOSE_TIMEOUT,
    FLUSH_BUSY_MS,
    MAX_BUFFER,
    MAX_RETRY_DELAY,
    BatchWriter,
)
from crabllm_sync.ledger.plan import DAY, HOUR, floor_to
from crabllm_sync.ledger.store import PRUNE_CHUNK

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

PRUNE_EVERY = 3600.0  # seconds between retention sweeps (over all workers)
PRUNE_JOB = "usage-retention"


def open_usage_database(config: Config) -> Database | None:
    """The usage database, when there is one to write to.

    With sqlite or redis storage (or `[storage] database`, or an explicit
    [extensions.usage] section), records go to the SQL database; memory
    storage alone records nothing.
    """
    s = config.storage
    if s.kind == "memory" and not s.database and config.extensions.usage is None:
        return None
    db = Database.for_config(config)
    db.migrate()
    return db


def usage_row(ctx: RequestContext) -> dict[str, Any]:
    """The usage table row of a finished request."""
    charge = charge_of(ctx)
    u = charge.usage
    return {
        "request_id": ctx.request_id,
        "ts": ctx.timestamp,
        "key_name": ctx.principal.name,
        "model": ctx.model or ctx.requested_model or "-",
        "provider": ctx.provider,
        "endpoint": ctx.endpoint,
        "input_tokens": u.input,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "output_tokens": u.output,
        "reasoning_tokens": u.reasoning,
        "estimated": u.estimated,
        "cost_nanos": charge.cost_nanos,
        "images": u.images,
        "characters": u.characters,
        "audio_ms": u.audio_ms,
        "latency_ms": round((time.monotonic() - ctx.started) * 1000, 3),
        "status": ctx.status,
        "stream": ctx.stream,
        "cache_hit": ctx.cache_hit,
    }


class UsageRecorder(BatchWriter, Extension):
    name = "usage"

    def __init__(
        self,
        section: UsageExtension | None,
        db: Database,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        section = section or UsageExtension()
        super().__init__(
            "usage", self._store, section.flush_interval, section.batch_size
        )
        self.db = db
        self.retention_days = retention_days
        self.clock = clock
        self._swept_at = float("-inf")

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self.add(usage_row(ctx))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self.add(usage_row(ctx))

    def _store(
        self, rows: Sequence[dict[str, Any]], *, busy_timeout_ms: int | None = None
    ) -> None:
        self.db.insert_usage(rows, busy_timeout_ms=busy_timeout_ms)
        if self.retention_days is None:
            return
        now = self.clock()
        # This worker asks at most once per PRUNE_EVERY; the claim lets one
        # worker of all (every instance) sweep per PRUNE_EVERY.
        if now - self._swept_at >= PRUNE_EVERY:
            self._swept_at = now
            self.sweep(now)

    def sweep(self, now: float) -> int:
        """Prune raw rows past retention when this worker wins the hour's
        claim; the rows deleted. A failure is logged and retried next time."""
        try:
            if not self.db.claim_job(PRUNE_JOB, now, PRUNE_EVERY):
                return 0
        except peewee.PeeweeException as exc:
            log.warning("usage: retention claim failed: %s", exc)
            return 0
        return self.prune(now)

    def prune(self, now: float) -> int:
        """Delete raw rows older than retention, a chunk per statement. The
        cut is on an hour boundary, so no hour is left half raw."""
        assert self.retention_days is not None
        before = floor_to(now - self.retention_days * DAY, HOUR)
        n = 0
        try:
            while True:
                deleted = self.db.prune_usage(before)
                n += deleted
                if deleted < PRUNE_CHUNK:
                    break
                time.sleep(0)  # let requests run between chunks
        except peewee.PeeweeException as exc:
            log.warning("usage: pruning old rows failed: %s", exc)
            return n
        if n:
            log.info("usage: pruned %d rows older than %g days", n, self.retention_days)
        return n
