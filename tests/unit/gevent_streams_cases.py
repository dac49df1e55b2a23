"""Cases for test_streams_gevent.py, run in a subprocess under gevent's
monkey-patching (the test process itself runs without gevent).

Each case relays lines read from a real socket pair through streams.paced()
in a consumer greenlet, as gunicorn's gevent worker does, and prints a JSON
report on its last line.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.event import Event  # noqa: E402

from crabllm_sync import streams  # noqa: E402


class Upstream:
    """Lines from a socket; `abort()` shuts the socket, as ScopedSession does."""

    def __init__(self) -> None:
        self.server, self.sock = socket.socketpair()
        self.closed = Event()
        self.aborted = False
        self._lines = self._read()

    def _read(self):
        f = self.sock.makefile("rb")
        try:
            for line in f:
                if line == b"end\n":
                    return
                if line == b"fail\n":
                    raise ValueError("upstream failed")
                yield line.strip().decode()
        finally:
            self.closed.set()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._lines)

    def close(self) -> None:
        self._lines.close()

    def abort(self) -> None:
        self.aborted = True
        self.sock.shutdown(socket.SHUT_RDWR)

    def send(self, *lines: str) -> None:
        self.server.sendall(b"".join(line.encode() + b"\n" for line in lines))


def pause() -> dict:
    """An item, a pause the consumer fills with keep-alives, the rest."""
    up, two_pauses = Upstream(), Event()
    shape = []

    def consume():
        for batch in streams.paced(up, 0.05):
            shape.append("pause" if batch.is_pause else list(batch))
            if shape.count("pause") == 2 and shape[0] == ["a"]:
                two_pauses.set()
            if batch.last:
                shape.append("last")

    c = gevent.spawn(consume)
    up.send("a")
    two_pauses.wait(30)
    up.send("b", "c", "end")
    c.get(timeout=30)
    items = [i for s in shape if isinstance(s, list) for i in s]
    return {"items": items, "pauses": shape.count("pause"), "end": shape[-1]}


def leave(during: str) -> dict:
    """The consumer leaves during a pause (the reader is blocked on its
    socket) or right after an item (the reader is parked between items)."""
    up = Upstream()
    seen = []

    def consume():
        batches = streams.paced(up, 0.05)
        for batch in batches:
            seen.extend(["pause"] if batch.is_pause else batch)
            if during == "pause" and batch.is_pause:
                break
            if during == "item" and batch:
                break
        batches.close()
        return up.closed.is_set()

    up.send("a", "b", "c")
    closed_when_left = gevent.spawn(consume).get(timeout=30)
    return {"closed": closed_when_left, "aborted": up.aborted, "seen": seen}


def leave_elsewhere() -> dict:
    """The stream is closed from another greenlet than the one that read it
    (a response collected unclosed): the upstream is still cut."""
    up = Upstream()
    batches = streams.paced(up, 0.05)

    def consume():
        for batch in batches:
            if batch.is_pause:
                return

    gevent.spawn(consume).get(timeout=30)
    batches.close()
    return {"aborted": up.aborted}


def error() -> dict:
    """A failure is raised in the consumer after the items before it."""
    up = Upstream()
    up.send("a", "fail")
    items = []
    try:
        for batch in streams.paced(up, 30.0):
            items += batch
    except ValueError as exc:
        return {"items": items, "error": str(exc), "closed": up.closed.is_set()}
    return {"items": items, "error": None}


if __name__ == "__main__":
    case, *args = sys.argv[1:]
    print(json.dumps(globals()[case](*args)))
