"""The gevent worker as it runs in a worker process (imported after the fork).

gunicorn's gevent worker, with a shutdown that waits only for requests in
flight. gunicorn's own waited for every open client connection, and an idle
keep-alive connection stays open up to `keepalive` (75 s) waiting for its
next request: after any request made without `Connection: close`, SIGTERM
took the whole graceful timeout and ended in a kill. Here, on SIGTERM:

- connections waiting for their next request are closed at once (what nginx
  does with idle keep-alives on a graceful stop);
- a response started after SIGTERM carries `Connection: close`, so a
  connection busy at SIGTERM is closed once its request is answered;
- the worker exits as soon as no request is in flight, or at
  graceful_timeout (then what is left is cut, as before).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker as GunicornGeventWorker

# A connection accepted during shutdown, before the listener closed, gets
# this long (seconds) to send its request instead of the keep-alive timeout.
FIRST_REQUEST_DURING_SHUTDOWN = 1.0


class GeventWorker(GunicornGeventWorker):
    """gunicorn's `-k gevent` worker; shutdown closes idle keep-alives."""

    def init_process(self) -> None:
        # Worker.__init__ ran in the master as the shim class (worker.py).
        self.worker_connections = self.cfg.worker_connections
        self._clients: dict[Any, socket.socket] = {}  # greenlet -> its client
        self._idle: set[socket.socket] = set()  # waiting for a request
        self._served: set[socket.socket] = set()  # had a request already
        self._stopping = Event()
        super().init_process()

    def load_wsgi(self) -> None:
        super().load_wsgi()
        self.wsgi = self._close_when_stopping(self.wsgi)

    # -- signals -----------------------------------------------------------------

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop (graceful); wakes run() at once instead of within 1 s."""
        super().handle_exit(sig, frame)
        self._stopping.set()

    # -- connections -------------------------------------------------------------

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        me = gevent.getcurrent()
        self._clients[me] = client
        try:
            super().handle(listener, client, addr)
        finally:
            self._clients.pop(me, None)
            self._idle.discard(client)
            self._served.discard(client)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        self._served.add(sock)
        return super().handle_request(listener_name, req, sock, addr)

    @contextmanager
    def timeout_ctx(self) -> Iterator[None]:
        """Around each wait for a request's head: the connection is idle."""
        client = self._clients.get(gevent.getcurrent())
        seconds = self.cfg.keepalive
        if not self.alive:
            if client in self._served:
                # Answered during shutdown with keep-alive (its response
                # began before SIGTERM): no next request, read EOF now.
                _shut(client)
            seconds = min(seconds, FIRST_REQUEST_DURING_SHUTDOWN)
        if client is not None:
            self._idle.add(client)
        try:
            with gevent.Timeout(seconds, False):
                yield
        finally:
            if client is not None:
                self._idle.discard(client)

    def _close_idle(self) -> int:
        """Shut the idle connections: their reads end, their handlers return."""
        idle = list(self._idle)
        for client in idle:
            _shut(client)
        return len(idle)

    def _close_when_stopping(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """The app, answering `Connection: close` once the worker is stopping.

        gunicorn decides the Connection header itself (it drops the app's)
        and closes after requests that *began* after SIGTERM; a request in
        flight at SIGTERM and answered after it is marked here.
        """

        def application(environ: dict[str, Any], start_response: Any) -> Any:
            def start(status: str, headers: list[Any], exc_info: Any = None) -> Any:
                if not self.alive:
                    response = getattr(start_response, "__self__", None)
                    if hasattr(response, "force_close"):
                        response.force_close()
                return start_response(status, headers, exc_info)

            return app(environ, start)

        return application

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        servers = [self._serve(s) for s in self.sockets]
        while self.alive:
            self.notify()
            self._stopping.wait(1.0)
        for server in servers:
            server.close()  # stop accepting
        closed = self._close_idle()
        self.log.info("Stopping: closed %d idle connections", closed)
        deadline = time.monotonic() + self.cfg.graceful_timeout
        for server in servers:
            while not server.pool.join(timeout=_upto(1.0, deadline)):
                if time.monotonic() >= deadline:
                    self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                    for s in servers:
                        s.stop(timeout=1)  # cut what is still running
                    return
                self.notify()

    def _serve(self, sock: Any) -> StreamServer:
        """What gunicorn's gevent worker starts for each listening socket."""
        sock.setblocking(1)
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        server = StreamServer(
            sock,
            handle=partial(self.handle, sock),
            spawn=Pool(self.worker_connections),
            **ssl_args,
        )
        if self.cfg.workers > 1:
            server.max_accept = 1
        server.start()
        return server


def _upto(seconds: float, deadline: float) -> float:
    return max(0.0, min(seconds, deadline - time.monotonic()))


def _shut(client: socket.socket | None) -> None:
    """Shut a connection both ways: its pending read ends with EOF."""
    if client is None:
        return
    try:
        client.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the client went first
