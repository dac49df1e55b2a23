"""SqliteStorage: the Storage protocol on one sqlite file, shared by every worker.

A `kv` table with wall-clock expiry; each call is one short statement in WAL
mode, so every gunicorn worker on the host can use the file at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crabllm_sync.errors import ServiceUnavailableError

# Busy timeout in ms. sqlite waits in C (a gevent worker cannot switch while it
# waits), so this stays short: a lock held longer is an outage, answered 503.
BUSY_TIMEOUT_MS = 2000
# One expired-row sweep every this many writes (lazy purge).
PURGE_EVERY = 500

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS kv ("
    " key TEXT PRIMARY KEY,"
    " value BLOB NOT NULL,"
    " expires REAL)"
)

# One statement: create, reset an expired row, or add to a live one.
_INCR = """
INSERT INTO kv (key, value, expires) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET
  value = CASE WHEN kv.expires IS NOT NULL AND kv.expires <= ?4
          THEN excluded.value ELSE CAST(kv.value AS INTEGER) + ?2 END,
  expires = CASE WHEN kv.expires IS NOT NULL AND kv.expires <= ?4
          THEN excluded.expires ELSE kv.expires END
RETURNING value
"""


WAL_ATTEMPTS = 8


def enable_wal(conn: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode = WAL`, tried again while another connection holds
    the file: switching a new file to WAL needs it alone for a moment, and
    sqlite then answers "database is locked" at once instead of waiting out
    the busy timeout (seen with several workers opening a new file together).
    Once the file is in WAL mode the pragma is a no-op that always succeeds.
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.01 * 2**attempt)  # 10 ms .. 0.6 s; cooperative under gevent


class SqliteStorage:
    """Counters and values with TTL in a sqlite file (one connection per process)."""

    def __init__(
        self,
        path: str,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.path = path
        self._clock = clock
        self._busy_ms = int(busy_timeout_ms)
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._writes = 0

    # -- connection ------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        # A connection must not cross fork(): reopen in each worker process.
        if self._conn is None or self._pid != os.getpid():
            parent = Path(self.path).parent
            if str(parent) not in ("", "."):
                parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_ms / 1000,
                isolation_level=None,  # autocommit: every call is one statement
                check_same_thread=False,  # greenlets of one worker share it
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
                enable_wal(conn)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._pid = os.getpid()
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement; a store failure is a 503 and the next call reconnects."""
        return self._execute(sql, params)[0]

    def _execute(
        self, sql: str, params: tuple[Any, ...] = ()
    ) -> tuple[list[tuple[Any, ...]], int]:
        """Rows and rowcount of one statement (errors as in _run)."""
        try:
            cursor = self._connection().execute(sql, params)
            return cursor.fetchall(), cursor.rowcount
        except sqlite3.Error as exc:
            self._drop()
            raise ServiceUnavailableError(
                f"storage unavailable (sqlite {self.path}): {exc}"
            ) from exc

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _wrote(self) -> None:
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self.purge_expired()

    # -- Storage protocol ------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        rows = self._run(
            "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires > ?)",
            (key, self._clock()),
        )
        return _bytes(rows[0][0]) if rows else None

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = self._clock() + ttl if ttl else None
        self._run(
            "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET "
            "value = excluded.value, expires = excluded.expires",
            (key, bytes(value), expires),
        )
        self._wrote()

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = self._clock()
        expires = now + ttl if ttl else None
        rows = self._run(_INCR, (key, int(amount), expires, now))
        self._wrote()
        return int(rows[0][0])

    def list_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        rows = self._run(
            "SELECT key, value FROM kv WHERE substr(key, 1, ?) = ? "
            "AND (expires IS NULL OR expires > ?) ORDER BY key",
            (len(prefix), prefix, self._clock()),
        )
        return [(k, _bytes(v)) for k, v in rows]

    def delete(self, key: str) -> None:
        self._run("DELETE FROM kv WHERE key = ?", (key,))

    def close(self) -> None:
        if self._pid == os.getpid():
            self._drop()
        self._conn = None

    def purge_expired(self) -> int:
        """Delete expired rows now; returns how many went."""
        _, deleted = self._execute(
            "DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?",
            (self._clock(),),
        )
        return deleted


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, str):
        return value.encode()
    return bytes(value)
