"""Pooled upstream sessions: requests' own HTTPAdapter, with a cheaper idle
check and the pool of each origin remembered (bench/README.md), and the
one-request view that can cut its responses from another thread.

providers/http.py sends on these; nothing else touches a connection.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import requests
import urllib3
import urllib3.connection
from requests.adapters import HTTPAdapter

# Enough for one gevent worker's concurrent streams to one provider.
POOL_SIZE = 1000

# Origins a session pools connections for; our sessions serve one provider each.
POOL_ORIGINS = 8


def make_session(pool_size: int = POOL_SIZE) -> requests.Session:
    """A pooled keep-alive session with no hidden retries and no env proxies."""
    session = requests.Session()
    # Reading proxy settings from the environment costs time on every call.
    session.trust_env = False
    adapter = _Adapter(
        pool_connections=POOL_ORIGINS,
        pool_maxsize=pool_size,
        max_retries=0,
        pool_block=False,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _CheapIdleCheck:
    """urllib3's test before it reuses a pooled connection, as one poll(2).

    A kept-alive connection is reusable while its socket has nothing to read
    (a readable idle socket means the server closed it or sent junk), and
    urllib3 checks that with select.poll on every reuse. Under gevent that
    poll is gevent's emulation, which sets up and tears down watchers on the
    event loop: 29 us a call measured against 1.3 us for the OS's poll with a
    zero timeout, which never blocks, so it is safe to call under gevent.
    Same question, same answer (the fd is polled, as urllib3 does; TLS too).
    """

    sock: Any

    @property
    def is_connected(self) -> bool:
        if self.sock is None:
            return False
        poller = _os_poll()()
        try:
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):  # closed under us: not reusable
            return False


def _os_poll() -> Callable[[], Any]:
    """select.poll as the OS gives it, also when gevent has patched it (the
    package does not import gevent: it is asked only if already loaded)."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_object_patched("select", "poll"):
        return monkey.get_original("select", "poll")  # type: ignore[no-any-return]
    return select.poll


class _HTTPConnection(_CheapIdleCheck, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_CheapIdleCheck, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    """requests' adapter, on pools of connections with the cheap idle check,
    remembering the pool of each origin it serves (see connection_pool)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPPool,
            "https": _HTTPSPool,
        }
        # origin -> its urllib3 pool: finding it through requests costs ~0.1 ms.
        self.pools: dict[str, urllib3.HTTPConnectionPool] = {}

    def close(self) -> None:
        """Close every pool now. urllib3 2's PoolManager.clear() only drops
        them (they close when garbage collected, which a request still
        holding one delays): a closed pool closes its idle connections at
        once and each one in use when its response is released."""
        manager = self.poolmanager
        pools = [manager.pools.get(key) for key in manager.pools.keys()]
        for pool in [*pools, *self.pools.values()]:
            if pool is not None:
                pool.close()
        self.pools.clear()
        super().close()

    def pool_for(
        self, origin: str, url: str, proxies: Mapping[str, str]
    ) -> tuple[urllib3.HTTPConnectionPool, str]:
        """The pool requests itself would use for `url`, and the request target."""
        pool = None if proxies else self.pools.get(origin)
        # A pool the manager evicted is closed (its queue is gone): look again.
        if pool is not None and pool.pool is not None:
            return pool, url[len(origin) :] or "/"
        target = requests.PreparedRequest()
        target.url = url
        pool = self.get_connection_with_tls_context(target, True, proxies)
        if not proxies and len(self.pools) < POOL_ORIGINS:
            self.pools[origin] = pool
        return pool, self.request_url(target, proxies)


def connection_pool(
    session: Session, url: str
) -> tuple[urllib3.HTTPConnectionPool, str]:
    """The session's pool for `url` (the one requests itself would use), and the
    request target to send on it."""
    adapter = session.get_adapter(url)
    if isinstance(adapter, _Adapter):
        start = url.find("://") + 3
        cut = url.find("/", start)
        origin = url if cut < 0 else url[:cut]
        return adapter.pool_for(origin, url, session.proxies)
    target = requests.PreparedRequest()
    target.url = url
    pool = adapter.get_connection_with_tls_context(target, True, session.proxies)
    return pool, adapter.request_url(target, session.proxies)


class ScopedSession:
    """One request's view of a pooled Session: remembers the responses it opened
    so another thread can cut them (abort) while a read is blocked on them."""

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self._responses: list[urllib3.BaseHTTPResponse] = []

    def track(self, resp: urllib3.BaseHTTPResponse) -> None:
        """Remember a response opened on the pool (send)."""
        self._responses.append(resp)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def abort(self) -> None:
        """Shut the sockets under this request's open responses (any thread)."""
        for resp in self._responses:
            try:
                # urllib3's own way to wake a read blocked in another thread.
                resp.shutdown()
            except (ValueError, RuntimeError, OSError, AttributeError):
                pass  # already closed, or released to the pool


def scoped(session: Any) -> Any:
    """A ScopedSession over a requests.Session; any other transport as it is."""
    if isinstance(session, requests.Session):
        return ScopedSession(session)
    return session


# What an adapter is handed: the pooled Session, or one request's ScopedSession
# over it. Adapters annotate with this and never import requests themselves.
Session: TypeAlias = requests.Session | ScopedSession
