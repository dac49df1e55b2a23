"""Local HTTP servers that play providers (and serve the gateway) on 127.0.0.1.

`Upstream` records every request it receives and answers from a script of
`Reply` objects (status, JSON, SSE events, delays, drops), falling back to a
per-path default handler. Provider-specific defaults live in tests/fakes/.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

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
        self.received = threading.Condition(self._lock)
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
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

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
        with self.received:
            self.requests.append(rec)
            reply = self.script.popleft() if self.script else None
            self.received.notify_all()
        if reply is None:
            reply = self._default(rec)
        if reply.hang is not None:
            reply.hang.wait(30)
        if reply.delay:
            time.sleep(reply.delay)
        return self._respond(reply)(environ, start_response)

    def _default(self, rec: Recorded) -> Reply:
        for pattern, handler in self.handlers:
            if pattern.search(rec.path):
                return handler(rec)
        return Reply(status=404, json={"error": {"message": f"no route {rec.path}"}})

    def _respond(self, reply: Reply) -> Response:
        headers = dict(reply.headers)
        if reply.events is not None or reply.chunks is not None:
            pieces = (
                [sse_bytes(e) for e in reply.events]
                if reply.events is not None
                else reply.chunks or []
            )
            resp = Response(
                self._pieces(pieces, reply),
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

    def _pieces(self, pieces: Iterable[bytes], reply: Reply) -> Iterator[bytes]:
        with self._lock:
            self.streams_open += 1
            self.streams_closed.clear()
        try:
            for i, piece in enumerate(pieces):
                if reply.drop_after is not None and i >= reply.drop_after:
                    raise _Dropped("scripted drop")
                if i and reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                yield piece
        finally:
            with self._lock:
                self.streams_open -= 1
                if self.streams_open == 0:
                    self.streams_closed.set()


def serve_app(app: Any) -> tuple[BaseWSGIServer, str]:
    """Serve a WSGI app (the gateway) on a real socket; returns (server, base URL)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"
