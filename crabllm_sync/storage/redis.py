"""RedisStorage: the Storage protocol on redis, for gateways on several hosts.

redis-py is imported lazily; one connection pool per worker process; short
socket timeouts so a dead redis answers 503 instead of hanging a request.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from crabllm_sync.errors import ServiceUnavailableError

CONNECT_TIMEOUT = 0.5  # seconds
SOCKET_TIMEOUT = 1.0  # seconds, per command
SCAN_COUNT = 500

# INCRBY and, only when the key was created by this call, PEXPIRE: atomic.
_INCR_LUA = """
local existed = redis.call('EXISTS', KEYS[1])
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if existed == 0 and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

T = TypeVar("T")


class RedisStorage:
    """Counters and values with TTL in redis (`redis://host:port/db` URL)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._client: Any = None
        self._incr: Any = None
        self._pid = 0

    def _redis(self) -> Any:
        # A pool must not cross fork(): each gunicorn worker builds its own.
        if self._client is None or self._pid != os.getpid():
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                # One immediate retry: a pooled connection that died with a
                # restarted redis is replaced, and a dead redis costs at most
                # two timeouts (redis-py's default is 3 retries with backoff).
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
            self._incr = self._client.register_script(_INCR_LUA)
            self._pid = os.getpid()
        return self._client

    def _call(self, fn: Callable[[Any], T]) -> T:
        """Run one redis operation; a redis failure is a 503 (and retried later)."""
        import redis

        try:
            return fn(self._redis())
        except redis.RedisError as exc:
            raise ServiceUnavailableError(
                f"storage unavailable (redis): {type(exc).__name__}: {exc}"
            ) from exc

    # -- Storage protocol ------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        return self._call(lambda r: r.get(key))

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = max(1, int(ttl * 1000)) if ttl else None
        self._call(lambda r: r.set(key, bytes(value), px=px))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        px = max(1, int(ttl * 1000)) if ttl else 0
        # _call runs _redis() first, which (re)builds the script for this process.
        return int(self._call(lambda r: self._incr(keys=[key], args=[amount, px])))

    def list_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        def scan(r: Any) -> list[tuple[str, bytes]]:
            pattern = _glob_escape(prefix) + "*"
            keys = sorted(set(r.scan_iter(match=pattern, count=SCAN_COUNT)))
            if not keys:
                return []
            values = r.mget(keys)
            return [
                (k.decode(), v)
                for k, v in zip(keys, values, strict=True)
                if v is not None
            ]

        return self._call(scan)

    def delete(self, key: str) -> None:
        self._call(lambda r: r.delete(key))

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()


def _glob_escape(text: str) -> str:
    """Escape redis MATCH glob characters so the prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)
