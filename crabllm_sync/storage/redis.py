"""RedisStorage: the Storage protocol on redis, for gateways on several hosts.

redis-py is imported lazily; one connection pool per worker process; short
socket timeouts so a dead redis answers 503 instead of hanging a request.
One server, a Redis Cluster or a primary behind Sentinel (redis_url.py).

Cluster-safe by construction: every command and script touches one key, so no
command spans two hash slots (no CROSSSLOT). The one multi-key read, the
listing, scans every primary and reads values slot by slot.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.storage.redis_url import RedisTarget, parse_redis_url

CONNECT_TIMEOUT = 0.5  # seconds
SOCKET_TIMEOUT = 1.0  # seconds, per command
SCAN_COUNT = 500
CLUSTER_RETRIES = 2
# Cluster and Sentinel: how long operations wait for a new primary, from the
# first failure, before they answer 503 ([storage] failover_wait), and the
# pauses between attempts.
FAILOVER_WAIT = 5.0  # seconds
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.4

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
    """Counters and values with TTL in redis (URL forms: redis_url.py)."""

    def __init__(self, url: str, failover_wait: float = FAILOVER_WAIT) -> None:
        self.url = url
        self.target = parse_redis_url(url)  # a bad URL fails at start
        self.failover_wait = failover_wait
        self._failing_since = 0.0  # monotonic time of the first failover error
        self._client: Any = None
        self._incr: Any = None
        self._pid = 0

    def _redis(self) -> Any:
        # A pool must not cross fork(): each gunicorn worker builds its own.
        if self._client is None or self._pid != os.getpid():
            self._client = connect(self.target)
            self._incr = self._client.register_script(_INCR_LUA)
            self._pid = os.getpid()
        return self._client

    def _call(self, fn: Callable[[Any], T]) -> T:
        """Run one redis operation; a redis failure is a 503 (and retried later).

        With a cluster or Sentinel, an operation that finds no primary (dead,
        or being replaced) is tried again until `failover_wait` seconds after
        the first such failure in this worker: a failover that ends within it
        costs requests time, not a 503; a longer outage is a 503 at once.
        """
        import redis
        from redis.exceptions import RedisClusterException

        errors: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
        if self.target.mode == "cluster":
            # redis-py's cluster client, shared by a worker's greenlets, may
            # close a connection another greenlet is reading while it re-reads
            # the slot map after a dead node: EBADF, or ValueError on the
            # closed buffer. A failover error too, not a 500.
            errors += (OSError, ValueError)
        pause = FIRST_PAUSE
        while True:
            try:
                result = fn(self._redis())
                self._failing_since = 0.0
                return result
            # RedisClusterException (no node for a slot) is no RedisError.
            except errors as exc:
                now = time.monotonic()
                # One window per worker from the first failure: past it (a
                # long outage) each operation tries once and fails at once.
                if self._failover(exc) and not self._failing_since:
                    self._failing_since = now
                deadline = self._failing_since + self.failover_wait
                if not (self._failover(exc) and now + pause < deadline):
                    raise ServiceUnavailableError(
                        f"storage unavailable (redis): {type(exc).__name__}: {exc}"
                    ) from exc
            time.sleep(pause)  # gevent's sleep in a worker: other requests run
            pause = min(2 * pause, MAX_PAUSE)

    def _failover(self, exc: Exception) -> bool:
        """True for the errors of a primary that is gone or being replaced."""
        if self.target.mode == "single" or not self.failover_wait:
            return False
        from redis import exceptions as e

        return isinstance(exc, OSError | ValueError) or isinstance(
            exc,
            e.ConnectionError  # refused, reset; MasterNotFoundError too
            | e.TimeoutError
            | e.ClusterDownError
            | e.TryAgainError
            | e.ReadOnlyError  # an old primary that came back as a replica
            | e.SlotNotCoveredError,
        )

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
            # On a cluster scan_iter visits every primary, and
            # mget_nonatomic sends one MGET per hash slot.
            keys = sorted(set(r.scan_iter(match=pattern, count=SCAN_COUNT)))
            if not keys:
                return []
            mget = r.mget_nonatomic if self.target.mode == "cluster" else r.mget
            values = mget(keys)
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


def connect(target: RedisTarget) -> Any:
    """The redis-py client of `target`: Redis, RedisCluster, or the primary
    of a Sentinel set-up (asked again for the primary after a failover)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeouts = {
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "socket_timeout": SOCKET_TIMEOUT,
    }
    if target.mode == "single":
        return redis.Redis.from_url(
            target.url,
            # One immediate retry: a pooled connection that died with a
            # restarted redis is replaced, and a dead redis costs at most
            # two timeouts (redis-py's default is 3 retries with backoff).
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
            **timeouts,
        )
    auth = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        from redis.cluster import ClusterNode, RedisCluster

        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            # Attempts after a dead node, CLUSTERDOWN or a moved slot, each
            # after re-reading the slot map: a failover is followed without a
            # restart, and a request waits at most a few timeouts for it.
            retry=Retry(NoBackoff(), CLUSTER_RETRIES),
            ssl=target.tls,
            **auth,
            **timeouts,
        )
    from redis.sentinel import Sentinel

    sentinels = Sentinel(
        list(target.nodes),
        sentinel_kwargs={
            "password": target.sentinel_password,
            "ssl": target.tls,
            **timeouts,
        },
        ssl=target.tls,
        **timeouts,
    )
    # Each new connection asks the sentinels where the primary is; one whose
    # server died, or became a replica, is dropped and the retry reconnects.
    return sentinels.master_for(
        target.service,
        db=target.db,
        retry=Retry(NoBackoff(), 1),
        health_check_interval=30,
        **auth,
        **timeouts,
    )


def _glob_escape(text: str) -> str:
    """Escape redis MATCH glob characters so the prefix matches literally."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)
