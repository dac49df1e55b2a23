"""Local HTTP servers that play providers (and serve the gateway) on 127.0.0.1.

`Upstream` records every request it receives and answers from a script of
`Reply` objects (status, JSON, SSE events, delays, drops), falling back to a
per-path default handler. Provider-specific defaults live in tests/fakes/.
"""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

# How often a serving loop checks for shutdown(): stopping a server waits up
# to this long (socketserver's default, 0.5 s, cost every test half a second).
POLL_INTERVAL = 0.01


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    received_at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """A scripted answer. `events` makes an SSE stream (dicts are JSON-encoded)."""

    status: int = 200
    json: Any = None
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Any] | None = None  # dict | str ("[DONE]") | bytes (raw, verbatim)
    chunks: Iterable[bytes] | None = None  # raw body pieces (a generator is fine)
    delay: float = 0.0  # before the status line
    chunk_delay: float = 0.0  # between stream pieces
    pauses: dict[int, float] = field(default_factory=dict)  # piece index -> wait
    drop_after: int | None = None  # break the connection after N pieces
    hang: threading.Event | None = None  # block (before answering) until set
    content_type: str | None = None


Handler = Callable[[Recorded], Reply]


def sse_bytes(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    if isinstance(event, tuple):  # (event name, payload): Anthropic framing
        name, payload = event
        return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
    return f"data: {json.dumps(event)}\n\n".encode()


class _Dropped(Exception):
    """Raised inside the body iterator to break the connection mid-stream."""


class Upstream:
    """A scripted provider on 127.0.0.1:<random port>."""

    def __init__(self, handlers: dict[str, Handler] | None = None) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Reply] = deque()
        self.handlers: list[tuple[re.Pattern[str], Handler]] = []
        self.streams_open = 0
        self.streams_closed = threading.Event()
        self._lock = threading.Lock()
        # Notified on every request and every stream opening or closing.
        self.received = threading.Condition(self._lock)
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        for pattern, handler in (handlers or {}).items():
            self.route(pattern, handler)
        self._server: BaseWSGIServer | None = None

    # -- setup ---------------------------------------------------------------

    def route(self, pattern: str, handler: Handler) -> None:
        """Answer paths matching regex `pattern` with `handler` (newest first)."""
        self.handlers.insert(0, (re.compile(pattern), handler))

    def enqueue(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order, before any handler."""
        self.script.extend(replies)

    def start(self) -> Upstream:
        self._server = _start_server(self._wsgi)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def kill(self) -> None:
        """Die like a crashed provider: stop listening, cut every connection."""
        self.stop()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_for_requests(self, n: int, timeout: float = 10.0) -> list[Recorded]:
        with self.received:
            ok = self.received.wait_for(lambda: len(self.requests) >= n, timeout)
        assert ok, f"expected {n} requests, got {len(self.requests)}"
        return self.requests

    def wait_until(
        self, predicate: Callable[[Upstream], bool], timeout: float = 10.0
    ) -> None:
        """Block until `predicate(self)` holds (checked on each request/stream)."""
        with self.received:
            ok = self.received.wait_for(lambda: predicate(self), timeout)
        assert ok, f"upstream condition not met within {timeout}s"

    # -- serving -------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        req = Request(environ)
        rec = Recorded(
            method=req.method,
            path=req.path,
            query=dict(req.args),
            headers={k.lower(): v for k, v in req.headers.items()},
            body=req.get_data(),
        )
        sock = environ.get("werkzeug.socket")
        with self.received:
            self.requests.append(rec)
            reply = self.script.popleft() if self.script else None
            if sock is not None:
                self._sockets.add(sock)
            self.received.notify_all()
        if reply is None:
            reply = self._default(rec)
        if reply.hang is not None:
            reply.hang.wait(30)
        if reply.delay:
            time.sleep(reply.delay)
        return self._respond(reply, sock)(environ, start_response)

    def _default(self, rec: Recorded) -> Reply:
        for pattern, handler in self.handlers:
            if pattern.search(rec.path):
                return handler(rec)
        return Reply(status=404, json={"error": {"message": f"no route {rec.path}"}})

    def _respond(self, reply: Reply, sock: socket.socket | None) -> Response:
        headers = dict(reply.headers)
        if reply.events is not None or reply.chunks is not None:
            pieces = (
                [sse_bytes(e) for e in reply.events]
                if reply.events is not None
                else reply.chunks or []
            )
            resp = Response(
                self._pieces(pieces, reply, sock),
                status=reply.status,
                headers=headers,
                content_type=reply.content_type or "text/event-stream",
                direct_passthrough=True,
            )
            return resp
        if reply.json is not None:
            return Response(
                json.dumps(reply.json),
                status=reply.status,
                headers=headers,
                content_type=reply.content_type or "application/json",
            )
        return Response(
            reply.body or b"",
            status=reply.status,
            headers=headers,
            content_type=reply.content_type or "application/octet-stream",
        )

    def _pieces(
        self, pieces: Iterable[bytes], reply: Reply, sock: socket.socket | None
    ) -> Iterator[bytes]:
        with self.received:
            self.streams_open += 1
            self.streams_closed.clear()
            self.received.notify_all()
        try:
            for i, piece in enumerate(pieces):
                if reply.drop_after is not None and i >= reply.drop_after:
                    raise _Dropped("scripted drop")
                wait = reply.pauses.get(i, reply.chunk_delay if i else 0.0)
                if wait and not _wait_for_peer(sock, wait):
                    raise _Dropped("the client went away during a pause")
                yield piece
        finally:
            with self.received:
                self.streams_open -= 1
                if self.streams_open == 0:
                    self.streams_closed.set()
                self.received.notify_all()


def _wait_for_peer(sock: socket.socket | None, seconds: float) -> bool:
    """Wait `seconds`; False as soon as the client closes its end (so a paused
    stream notices a gateway that hung up, as a real server's write would)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if sock is None:
            time.sleep(left)
            return True
        try:
            readable, _, _ = select.select([sock], [], [], min(left, 0.5))
            if readable and not sock.recv(1, socket.MSG_PEEK):
                return False
        except OSError:
            return False
        if readable:  # bytes waiting (not a hang-up): nothing more to watch
            time.sleep(max(0.0, deadline - time.monotonic()))
            return True
    return True


def _start_server(app: Any) -> BaseWSGIServer:
    """A threaded werkzeug server for `app` on a free 127.0.0.1 port, serving
    in a daemon thread; stop it with shutdown() and server_close()."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True
    ).start()
    return server


def serve_app(app: Any) -> tuple[BaseWSGIServer, str]:
    """Serve a WSGI app (the gateway) on a real socket; returns (server, base URL)."""
    server = _start_server(app)
    return server, f"http://127.0.0.1:{server.server_port}"
