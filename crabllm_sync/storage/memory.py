"""In-process storage: one dict per process (each gunicorn worker has its own)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from crabllm_sync.errors import ConflictError

FIX = (
    'use [storage] kind = "sqlite" or "redis" (or set [storage] database), '
    "or run one worker (--workers 1, WEB_CONCURRENCY=1)"
)


def refuse_unshared(environ: Mapping[str, Any], what: str) -> None:
    """ConflictError when `what` would reach only this worker of several.

    The server says whether other processes serve the same app: gunicorn sets
    `wsgi.multiprocess` when it runs more than one worker.
    """
    if environ.get("wsgi.multiprocess"):
        raise ConflictError(
            f"{what} is refused: with memory storage each worker process keeps "
            f"its own copy, so it would reach this worker only; {FIX}"
        )


class MemoryStorage:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: dict[str, tuple[bytes | int, float | None]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, key: str) -> bytes | int | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self._clock():
            del self._data[key]
            return None
        return value

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key)
        if isinstance(value, int):
            return str(value).encode()
        return value

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = self._clock() + ttl if ttl else None
        with self._lock:
            self._data[key] = (value, expires)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._lock:
            current = self._live(key)
            if current is None:
                expires = self._clock() + ttl if ttl else None
                new = amount
            else:
                expires = self._data[key][1]
                new = int(current) + amount
            self._data[key] = (new, expires)
            return new

    def list_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        with self._lock:
            keys = [k for k in self._data if k.startswith(prefix)]
            out = []
            for k in keys:
                v = self._live(k)
                if v is not None:
                    out.append((k, str(v).encode() if isinstance(v, int) else v))
        return out

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def close(self) -> None:
        pass
