"""Stored Responses written to SQL off the request path.

A request that stores a Response only adds it to this worker's buffer; a
BatchWriter (extensions/batching.py, as usage and audit rows) writes the
buffer in one transaction every `[responses] flush_interval` seconds (0.1 by
default), at worker exit, and after a database outage (records wait in the
buffer meanwhile).

Reads see this worker's writes at once: get and delete look in the buffer
first. A record another worker (or host) still holds is not in the database
for up to about one flush: a miss polls the database for up to `miss_wait`
(the flush interval, a flush's sqlite lock wait and MISS_WAIT) before it is
a 404, so a follow-up that lands on another worker finds its predecessor
while the database is healthy.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from crabllm_sync.extensions.batching import FLUSH_BUSY_MS, BatchWriter

if TYPE_CHECKING:
    from crabllm_sync.response_store import SqlStore, Stored

T = TypeVar("T")

BATCH_SIZE = 200
# A miss waits for another worker's flush: its interval, its sqlite lock wait
# (FLUSH_BUSY_MS) and this margin for a loaded worker, polling every
# POLL_EVERY: 1 s with the default interval. An id that is nowhere is a 404
# that much later, and only a miss waits.
MISS_WAIT = 0.7
POLL_EVERY = 0.05


class BufferedStore:
    """A SqlStore whose writes go through a BatchWriter; same interface."""

    def __init__(
        self,
        store: SqlStore,
        flush_interval: float,
        *,
        miss_wait: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.sleep = sleep
        self.monotonic = monotonic
        # How long a miss polls the database before it is final.
        if miss_wait is None:
            miss_wait = flush_interval + FLUSH_BUSY_MS / 1000 + MISS_WAIT
        self.miss_wait = miss_wait
        self._pending: dict[str, Stored] = {}  # buffered or being written
        self._lock = threading.Lock()
        self.writer = _Writer(self, flush_interval)

    # -- the ResponseStore interface -------------------------------------------

    def put(self, record: Stored) -> None:
        with self._lock:
            self._pending[record.id] = record
        self.writer.add({"id": record.id, "record": record})

    def get(self, response_id: str, key: str) -> Stored | None:
        # The database is read after the buffer: a record leaves the buffer
        # only once written, so a miss in both is not a record in between.
        found = self._buffered(response_id, key)
        if found is not None:
            return found
        return self._poll(lambda: self.store.get(response_id, key))

    def delete(self, response_id: str, key: str) -> bool:
        if self._buffered(response_id, key) is not None:
            with self.writer.paused():
                # No flush under way: the record is still buffered, or written.
                dropped = self.writer.discard(lambda row: row["id"] == response_id)
                with self._lock:
                    self._pending.pop(response_id, None)
            if dropped:
                return True
        return self._poll(lambda: self.store.delete(response_id, key))

    def close(self) -> None:
        """Write what is buffered (worker exit)."""
        self.writer.close()

    # -- inside ----------------------------------------------------------------

    def _buffered(self, response_id: str, key: str) -> Stored | None:
        record = self._pending.get(response_id)
        if record is None or record.key != key:
            return None
        return record if record.expires_at > self.store.clock() else None

    def _poll(self, attempt: Callable[[], T]) -> T:
        """`attempt` until it finds something or miss_wait has passed."""
        deadline = self.monotonic() + self.miss_wait
        while True:
            found = attempt()
            if found or self.monotonic() >= deadline:
                return found
            self.sleep(POLL_EVERY)

    def _write(
        self, rows: Sequence[dict[str, Any]], *, busy_timeout_ms: int | None = None
    ) -> None:
        records = [row["record"] for row in rows]
        self.store.put_many(records, busy_timeout_ms=busy_timeout_ms)
        self._forget(records)

    def _forget(self, records: Sequence[Stored]) -> None:
        with self._lock:
            for record in records:
                # Only that version: a newer put of the same id stays.
                if self._pending.get(record.id) is record:
                    del self._pending[record.id]


class _Writer(BatchWriter):
    def __init__(self, store: BufferedStore, flush_interval: float) -> None:
        super().__init__("responses", store._write, flush_interval, BATCH_SIZE)
        self.store = store

    def dropped(self, rows: list[dict[str, Any]]) -> None:
        self.store._forget([row["record"] for row in rows])
