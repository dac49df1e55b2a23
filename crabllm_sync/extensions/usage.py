"""One usage record per request, written to the `usage` table in batches.

Requests only append to an in-process buffer; a background flusher (a greenlet
under gevent) writes it every `flush_interval` seconds or at `batch_size` rows,
and close() writes the rest at worker exit. Rows that fail to write (database
down) stay buffered and are written when it returns.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import peewee

from crabllm_sync.config import Config, UsageExtension
from crabllm_sync.db import Database
from crabllm_sync.extensions import Extension
from crabllm_sync.extensions.accounting import charge_of

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

# Rows kept through a database outage; beyond this the oldest are dropped.
MAX_BUFFER = 100_000
CLOSE_TIMEOUT = 10.0
# While the database is down, retries back off up to this (seconds), so a
# failing connect does not run on every row. Short, because it is also how
# long rows wait after the database is back: a worker SIGKILLed then loses
# at most max(flush_interval, MAX_RETRY_DELAY) seconds of rows.
MAX_RETRY_DELAY = 2.0
# The background flush waits at most this long (ms) for a sqlite lock held by
# another process: sqlite waits in C, so a gevent worker can serve nothing
# meanwhile. Rows that miss the lock stay buffered for the next flush; the
# last flush at exit waits the database's usual timeout.
FLUSH_BUSY_MS = 200
# GET /v1/usage waits at most this long (s) for a background flush under way:
# that flush's own sqlite wait is FLUSH_BUSY_MS, so this is only reached when
# the worker is starved.
FLUSH_WAIT = 2.0


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


class UsageRecorder(Extension):
    name = "usage"

    def __init__(self, section: UsageExtension | None, db: Database) -> None:
        section = section or UsageExtension()
        self.flush_interval = section.flush_interval
        self.batch_size = section.batch_size
        self.db = db
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()  # a full batch, or close()
        self._waiting = threading.Event()  # rows are buffered (set under _lock)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self._retry_delay = 0.0  # > 0 while the database is failing

    # -- hooks -----------------------------------------------------------------

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self.add(usage_row(ctx))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self.add(usage_row(ctx))

    # -- buffer ----------------------------------------------------------------

    def add(self, row: dict[str, Any]) -> None:
        with self._lock:
            self._rows.append(row)
            self._waiting.set()
            full = len(self._rows) >= self.batch_size
        self._ensure_flusher()
        if full and not self._retry_delay:
            self._wake.set()

    @property
    def retry_delay(self) -> float:
        """Seconds the flusher waits before retrying a failing database (0: healthy)."""
        return self._retry_delay

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def flush(self, busy_timeout_ms: int | None = None) -> bool:
        """Write buffered rows now; False when the database refused (kept)."""
        with self._flushing:
            return self._write(busy_timeout_ms)

    def flush_now(self) -> None:
        """A flush a request may wait for (GET /v1/usage), bounded: skipped while
        the database is failing; a flush already running (whose rows are out of
        the buffer) is waited for at most FLUSH_WAIT seconds, so the reader
        sees this worker's rows; a sqlite lock is waited for at most
        FLUSH_BUSY_MS."""
        if self._retry_delay:
            return
        if not self._flushing.acquire(timeout=FLUSH_WAIT):
            return
        try:
            if self.pending():
                self._write(FLUSH_BUSY_MS)
        finally:
            self._flushing.release()

    def _write(self, busy_timeout_ms: int | None) -> bool:
        with self._lock:
            rows, self._rows = self._rows, []
            self._waiting.clear()
        for i in range(0, len(rows), self.batch_size):
            try:
                self.db.insert_usage(
                    rows[i : i + self.batch_size], busy_timeout_ms=busy_timeout_ms
                )
            except (peewee.PeeweeException, OSError) as exc:
                self._requeue(rows[i:])
                self._retry_delay = min(
                    MAX_RETRY_DELAY,
                    max(self.flush_interval, 2 * self._retry_delay),
                )
                log.warning(
                    "usage: database unavailable, %d records kept: %s",
                    len(rows) - i,
                    exc,
                )
                return False
        self._retry_delay = 0.0
        return True

    def _requeue(self, rows: list[dict[str, Any]]) -> None:
        with self._lock:
            self._rows[:0] = rows
            self._waiting.set()
            excess = len(self._rows) - MAX_BUFFER
            if excess > 0:
                del self._rows[:excess]
                log.error("usage: buffer full, dropped the %d oldest records", excess)

    # -- the flusher -----------------------------------------------------------

    def _ensure_flusher(self) -> None:
        # Started in the process that records (a gunicorn worker, after fork).
        if self._pid == os.getpid() or self._closed:
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            # Published only once started: close() may run on another thread.
            thread = threading.Thread(
                target=self._run, name="crabllm-usage-flush", daemon=True
            )
            thread.start()
            self._thread = thread
        atexit.register(self.close)

    def _run(self) -> None:
        # Idle (nothing buffered) it sleeps; once a row is buffered it writes
        # within flush_interval, or at once when a batch is full.
        while not self._closed:
            self._waiting.wait()
            if self._closed:
                break
            self._wake.wait(max(self.flush_interval, self._retry_delay))
            self._wake.clear()
            if self._closed:
                break
            self.flush(FLUSH_BUSY_MS)

    def close(self) -> None:
        """Stop the flusher and write what is left (worker exit)."""
        self._closed = True
        self._wake.set()
        self._waiting.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_TIMEOUT)
        if not self.flush():
            log.error("usage: %d records could not be written at exit", self.pending())
