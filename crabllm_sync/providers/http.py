"""The transport seam: with pool.py (its sessions), the only code that
imports `requests`.

Every upstream HTTP call goes through send() (post_json / post_stream /
post_raw are its three shapes): one error mapping of requests' and urllib3's
exceptions into UpstreamError and its timeouts, one redaction of the
credentials sent, redirects never followed, and responses released when their
iterator is closed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import requests
import urllib3
import urllib3.exceptions

from crabllm_sync.errors import (
    MIN_SECRET,
    UpstreamError,
    UpstreamReadTimeoutError,
    UpstreamTimeoutError,
    redact,
)
from crabllm_sync.providers.pool import (
    POOL_SIZE,
    ScopedSession,
    Session,
    connection_pool,
    make_session,
    scoped,
)
from crabllm_sync.tracing import propagate
from crabllm_sync.wire.verbatim import Verbatim

# Adapters and the gateway use the pool's names through this module.
__all__ = [
    "JSON_HEADERS",
    "MIN_SECRET",
    "POOL_SIZE",
    "ScopedSession",
    "Session",
    "connection_pool",
    "credentials",
    "error_from_response",
    "make_session",
    "parse_retry_after",
    "post_json",
    "post_raw",
    "post_stream",
    "redact",
    "scoped",
    "send",
    "timeouts",
]

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json"}

_TIMEOUTS = (
    requests.exceptions.Timeout,
    urllib3.exceptions.TimeoutError,
)
# Timeouts once the request is out (waiting for, or reading, the answer).
_READ_TIMEOUTS = (
    requests.exceptions.ReadTimeout,
    urllib3.exceptions.ReadTimeoutError,
)
_BROKEN = (
    requests.exceptions.RequestException,
    urllib3.exceptions.HTTPError,
    OSError,
)


def timeouts(seconds: float) -> tuple[float, float]:
    """(connect, read) from a provider's `timeout`: connect is capped at 10 s."""
    return (min(seconds, 10.0), seconds)


def _timeout(seconds: float) -> urllib3.Timeout:
    connect, read = timeouts(seconds)
    return urllib3.Timeout(connect=connect, read=read)


def post_json(
    session: Session,
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
    # preload_content: the body is read inside send and the connection is
    # back in the pool before we parse; read errors surface from send.
    resp = send(session, url, orjson.dumps(body), headers, timeout, provider, False)
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
    session: Session,
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
    resp = send(session, url, orjson.dumps(body), headers, timeout, provider, True)
    return _lines(resp, provider)


def post_raw(
    session: Session,
    url: str,
    *,
    data: Any,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
) -> tuple[urllib3.BaseHTTPResponse, Iterator[bytes]]:
    """POST any body (bytes, or a file-like with a length); return the response
    (its `headers`) and its body chunks as they arrive."""
    resp = send(session, url, data, headers, timeout, provider, True)
    return resp, _chunks(resp, provider)


def send(
    session: Session,
    url: str,
    body: Any,
    headers: Mapping[str, str],
    timeout: float,
    provider: str,
    stream: bool,
) -> urllib3.BaseHTTPResponse:
    """The one upstream POST: every call (JSON, stream, multipart, binary).

    Sent on the session's own urllib3 pool, skipping requests' per-call layer:
    Session.request (merging settings, cookies, hooks, URL re-parsing, building
    a Response) cost more CPU than the HTTP exchange itself (bench/README.md).
    The pool and its TLS settings are the mounted adapter's. retries=False:
    routing.py retries. redirect=False: a redirect would carry the credential
    headers to wherever it points; a 3xx is an error. An error answer's text
    is cut of the credentials in `headers` before it goes anywhere.
    """
    if hasattr(body, "read") and "content-length" not in headers:
        # A file-like body of known length (multipart) is sent with a length,
        # not chunked: not every provider accepts a chunked upload.
        headers = {**headers, "content-length": str(len(body))}
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
    except _BROKEN as exc:
        raise _transport_error(exc, provider) from exc
    if isinstance(session, ScopedSession):
        session.track(resp)
    if resp.status >= 300:
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
        if resp.status < 400:
            # Not transient (a 502 for the client): a moved endpoint is config.
            raise UpstreamError(
                f"{provider}: answered a redirect ({resp.status}), not followed",
                provider=provider,
                upstream_status=resp.status,
            )
        raise error_from_response(
            resp.status, content, resp.headers, provider, secrets=credentials(headers)
        )
    return resp


def _transport_error(exc: BaseException, provider: str) -> UpstreamError:
    """The gateway error for a failure to send or to get the status line."""
    if isinstance(exc, _READ_TIMEOUTS):
        # Sent, no answer in time: the provider may be generating.
        return UpstreamReadTimeoutError(
            f"{provider}: timed out waiting for the answer", provider=provider
        )
    if isinstance(exc, urllib3.exceptions.NewConnectionError):  # a ConnectTimeout
        return UpstreamError(
            f"{provider}: connection failed: {_why(exc)}", provider=provider
        )
    if isinstance(exc, _TIMEOUTS):
        return UpstreamTimeoutError(
            f"{provider}: timed out connecting", provider=provider
        )
    return UpstreamError(
        f"{provider}: connection failed: {_why(exc)}", provider=provider
    )


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
        # The provider answered and stalled: it may still be generating.
        raise UpstreamReadTimeoutError(
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
