"""The transport seam: the only module that imports `requests`.

Every upstream HTTP call goes through post_json / post_stream / post_raw, which
turn requests' and urllib3's exceptions into UpstreamError / UpstreamTimeoutError
and close responses when their iterator is closed.
"""

from __future__ import annotations

import select
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeAlias

import orjson
import requests
import urllib3
import urllib3.connection
import urllib3.exceptions
from requests.adapters import HTTPAdapter

from crabllm_sync.errors import UpstreamError, UpstreamTimeoutError
from crabllm_sync.tracing import propagate
from crabllm_sync.wire.verbatim import Verbatim

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}
# Enough for one gevent worker's concurrent streams to one provider.
POOL_SIZE = 1000

_TIMEOUTS = (
    requests.exceptions.Timeout,
    urllib3.exceptions.TimeoutError,
)
_BROKEN = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


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
    # origin -> its urllib3 pool: finding it through requests costs ~0.1 ms a call.
    session.crabllm_pools = {}  # type: ignore[attr-defined]
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
    """requests' adapter, on pools of connections with the cheap idle check."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _HTTPPool,
            "https": _HTTPSPool,
        }


def timeouts(seconds: float) -> tuple[float, float]:
    """(connect, read) from a provider's `timeout`: connect is capped at 10 s."""
    return (min(seconds, 10.0), seconds)


def _timeout(seconds: float) -> urllib3.Timeout:
    connect, read = timeouts(seconds)
    return urllib3.Timeout(connect=connect, read=read)


def post_json(
    session: requests.Session,
    url: str,
    body: Any,
    *,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
) -> Any:
    """POST JSON, return the parsed JSON answer; errors become UpstreamError.

    A JSON object comes back as a Verbatim: the client gets the provider's
    own bytes when the answer passes through unchanged (wire/verbatim.py).
    """
    # preload_content: the body is read inside urlopen and the connection is
    # back in the pool before we parse; read errors surface from _urlopen.
    resp = _urlopen(session, url, orjson.dumps(body), headers, timeout, provider, False)
    data = resp.data
    try:
        parsed = orjson.loads(data)
        return Verbatim(parsed, data) if type(parsed) is dict else parsed
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"{provider}: answered with invalid JSON",
            provider=provider,
            upstream_status=502,
        ) from None


def post_stream(
    session: requests.Session,
    url: str,
    body: Any,
    *,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
) -> Iterator[bytes]:
    """POST and return an iterator of the answer's lines (no line endings).

    The request is sent and its status checked before this returns, so a failure
    to start raises here; failures while reading raise from the iterator.
    """
    resp = _urlopen(session, url, orjson.dumps(body), headers, timeout, provider, True)
    return _lines(resp, provider)


def post_raw(
    session: requests.Session,
    url: str,
    *,
    data: Any,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
) -> tuple[requests.Response, Iterator[bytes]]:
    """POST any body (bytes, iterator); return the response and its chunks."""
    resp = _send(session, url, data, headers, timeout, provider, True)
    return resp, _chunks(resp.raw, provider)


def _send(
    session: requests.Session,
    url: str,
    data: Any,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
    stream: bool,
) -> requests.Response:
    headers = propagate.outgoing(headers)  # traceparent, when tracing is on
    try:
        resp = session.post(
            url, data=data, headers=headers, timeout=timeouts(timeout), stream=stream
        )
    except _TIMEOUTS as exc:
        raise UpstreamTimeoutError(f"{provider}: timed out", provider=provider) from exc
    except _BROKEN as exc:
        raise UpstreamError(
            f"{provider}: connection failed: {_why(exc)}", provider=provider
        ) from exc
    if resp.status_code >= 400:
        try:
            raise error_from_response(
                resp.status_code,
                resp.content,
                resp.headers,
                provider,
                secrets=credentials(headers),
            )
        except _BROKEN as exc:
            raise UpstreamError(
                f"{provider}: answered {resp.status_code}",
                provider=provider,
                upstream_status=resp.status_code,
            ) from exc
        finally:
            resp.close()
    return resp


def _urlopen(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
    stream: bool,
) -> urllib3.BaseHTTPResponse:
    """POST on the session's own urllib3 pool, skipping requests' per-call layer.

    requests.Session.request (merging settings, cookies, hooks, URL re-parsing,
    building a Response) cost more CPU than the HTTP exchange itself (bench/
    README.md). The pool and its TLS settings are still the mounted adapter's,
    so connections are shared with post_raw. retries=False: routing.py retries.
    """
    headers = propagate.outgoing(headers)  # traceparent, when tracing is on
    try:
        pool, path = connection_pool(session, url)
        resp = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            timeout=_timeout(timeout),
            preload_content=not stream,
        )
    except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError
        raise UpstreamError(
            f"{provider}: connection failed: {_why(exc)}", provider=provider
        ) from exc
    except _TIMEOUTS as exc:
        raise UpstreamTimeoutError(f"{provider}: timed out", provider=provider) from exc
    except _BROKEN as exc:
        raise UpstreamError(
            f"{provider}: connection failed: {_why(exc)}", provider=provider
        ) from exc
    track = getattr(session, "track", None)
    if track is not None:
        track(resp)
    if resp.status >= 400:
        try:
            content = resp.data
        except _BROKEN as exc:
            _release(resp, consumed=False)
            raise UpstreamError(
                f"{provider}: answered {resp.status}",
                provider=provider,
                upstream_status=resp.status,
            ) from exc
        _release(resp, consumed=True)
        raise error_from_response(resp.status, content, resp.headers, provider)
    return resp


def connection_pool(
    session: requests.Session, url: str
) -> tuple[urllib3.HTTPConnectionPool, str]:
    """The session's pool for `url` (the one requests itself would use), and the
    request target to send on it; remembered per origin for make_session's."""
    start = url.find("://") + 3
    cut = url.find("/", start)
    origin, path = (url, "/") if cut < 0 else (url[:cut], url[cut:])
    pools = getattr(session, "crabllm_pools", None)
    if pools is not None and not session.proxies:
        pool = pools.get(origin)
        # A pool the manager evicted is closed (its queue is gone): look again.
        if pool is not None and pool.pool is not None:
            return pool, path
    adapter = session.get_adapter(url)
    target = requests.PreparedRequest()
    target.url = url
    pool = adapter.get_connection_with_tls_context(target, True, session.proxies)
    if pools is not None and not session.proxies and len(pools) < POOL_ORIGINS:
        pools[origin] = pool
    return pool, adapter.request_url(target, session.proxies)


def _release(resp: urllib3.BaseHTTPResponse, *, consumed: bool) -> None:
    """Give the connection back to the pool; closed first if the body is unread."""
    if not consumed:
        resp.close()
    resp.release_conn()


def error_from_response(
    status: int,
    content: bytes,
    headers: Mapping[str, str],
    provider: str,
    *,
    secrets: Iterable[str] = (),
) -> UpstreamError:
    """The UpstreamError for a provider's error answer, with its own message.

    Some providers repeat the credentials they were sent in their error
    message; each of `secrets` is cut out so the client and log never see it.
    """
    message = redact(_message(content), secrets) or f"HTTP {status}"
    if status in (401, 403):
        message = f"authentication with the provider failed: {message}"
    return UpstreamError(
        f"{provider}: {message}",
        upstream_status=status,
        provider=provider,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


# Request headers that carry a provider credential (lower-case names).
CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
MIN_SECRET = 8  # shorter values are not worth hiding (and would mangle text)


def credentials(headers: Mapping[str, str]) -> list[str]:
    """The credential values among request headers (without a `Bearer ` scheme)."""
    out = []
    for name, value in headers.items():
        if name.lower() not in CREDENTIAL_HEADERS or not value:
            continue
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic"):
            value = token
        if len(value.strip()) >= MIN_SECRET:
            out.append(value.strip())
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret replaced by `[redacted]`."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _message(content: bytes) -> str:
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content[:300].decode("utf-8", "replace").strip()
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("Message")
            if isinstance(msg, str):
                return msg
        elif isinstance(err, str):
            return err
        if isinstance(body.get("message"), str):
            return body["message"]
    return content[:300].decode("utf-8", "replace").strip()


def _chunks(raw: urllib3.BaseHTTPResponse, provider: str) -> Iterator[bytes]:
    """Body bytes as they arrive; releases the connection however iteration ends."""
    consumed = False
    try:
        if raw.chunked and raw.supports_chunked_reads():
            yield from raw.read_chunked(decode_content=True)
        else:
            while True:
                data = raw.read1(65536)
                if not data:
                    break
                yield data
        consumed = True
    except _TIMEOUTS as exc:
        raise UpstreamTimeoutError(
            f"{provider}: stream read timed out", provider=provider
        ) from exc
    except _BROKEN as exc:
        raise UpstreamError(
            f"{provider}: stream broken: {_why(exc)}", provider=provider
        ) from exc
    finally:
        _release(raw, consumed=consumed)


def _lines(resp: urllib3.BaseHTTPResponse, provider: str) -> Iterator[bytes]:
    buf = b""
    chunks = _chunks(resp, provider)
    try:
        for chunk in chunks:
            buf += chunk
            if b"\n" not in chunk:
                continue
            *lines, buf = buf.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r")
        if buf:
            yield buf.rstrip(b"\r")
    finally:
        chunks.close()


def _why(exc: BaseException) -> str:
    # Never echo the URL's query string or headers: they may carry keys.
    return type(exc).__name__


class ScopedSession:
    """One request's view of a pooled Session: remembers the responses it opened
    so another thread can cut them (abort) while a read is blocked on them."""

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self._responses: list[urllib3.BaseHTTPResponse] = []

    def post(self, *args: Any, **kwargs: Any) -> requests.Response:
        resp = self._session.post(*args, **kwargs)
        self._responses.append(resp.raw)
        return resp

    def track(self, resp: urllib3.BaseHTTPResponse) -> None:
        """Remember a response opened on the pool directly (_urlopen)."""
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
