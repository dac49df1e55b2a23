"""Rows buffered in process and written to SQL in batches, off the request path.

Requests only append to an in-process buffer; a background flusher (a greenlet
under gevent) writes it every `flush_interval` seconds or at `batch_size` rows,
and close() writes the rest at worker exit. Rows that fail to write (database
down) stay buffered and are written when it returns. Usage records and the
request log (audit) both write through a BatchWriter.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import peewee

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

Rows = Sequence[dict[str, Any]]
WriteRows = Callable[..., None]  # write(rows, busy_timeout_ms=...)


class BatchWriter:
    """A buffer of rows and the flusher that writes them with `write`."""

    def __init__(
        self, what: str, write: WriteRows, flush_interval: float, batch_size: int
    ) -> None:
        self.what = what  # in log lines: "usage", "audit"
        self.write = write
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._wake = threading.Event()  # a full batch, or close()
        self._waiting = threading.Event()  # rows are buffered (set under _lock)
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        self._retry_delay = 0.0  # > 0 while the database is failing

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

    @contextmanager
    def paused(self) -> Iterator[bool]:
        """No flush runs inside (one under way is waited for, at most
        FLUSH_WAIT seconds); yields whether it got that far."""
        got = self._flushing.acquire(timeout=FLUSH_WAIT)
        try:
            yield got
        finally:
            if got:
                self._flushing.release()

    def discard(self, match: Callable[[dict[str, Any]], bool]) -> int:
        """Drop the buffered rows that `match` (a record deleted before it was
        written); how many. Rows a flush under way holds are not in the buffer:
        call it inside paused()."""
        with self._lock:
            kept = [row for row in self._rows if not match(row)]
            dropped = len(self._rows) - len(kept)
            self._rows = kept
            if not kept:
                self._waiting.clear()
        return dropped

    def dropped(self, rows: list[dict[str, Any]]) -> None:
        """Rows dropped when the buffer is full (a subclass forgets them)."""

    def _write(self, busy_timeout_ms: int | None) -> bool:
        with self._lock:
            rows, self._rows = self._rows, []
            self._waiting.clear()
        for i in range(0, len(rows), self.batch_size):
            try:
                self.write(
                    rows[i : i + self.batch_size], busy_timeout_ms=busy_timeout_ms
                )
            except (peewee.PeeweeException, OSError) as exc:
                self._requeue(rows[i:])
                self._retry_delay = min(
                    MAX_RETRY_DELAY,
                    max(self.flush_interval, 2 * self._retry_delay),
                )
                log.warning(
                    "%s: database unavailable, %d records kept: %s",
                    self.what,
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
                self.dropped(self._rows[:excess])
                del self._rows[:excess]
                log.error(
                    "%s: buffer full, dropped the %d oldest records", self.what, excess
                )

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
                target=self._run, name=f"crabllm-{self.what}-flush", daemon=True
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
            log.error(
                "%s: %d records could not be written at exit",
                self.what,
                self.pending(),
            )
