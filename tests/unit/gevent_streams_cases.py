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
import time  # noqa: E402

import gevent  # noqa: E402
import greenlet  # noqa: E402
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


def hub_wakeups(consume):
    """Run `consume()` in a greenlet; (its result, how often the hub switched
    into that greenlet, i.e. woke it through gevent's run queue or a timer)."""
    hub, woken_by_hub = gevent.get_hub(), []

    def traced():
        me = greenlet.getcurrent()

        def trace(event, args):
            if event == "switch" and args[1] is me and args[0] is hub:
                woken_by_hub.append(1)

        greenlet.settrace(trace)
        try:
            return consume()
        finally:
            greenlet.settrace(None)

    return gevent.spawn(traced).get(timeout=30), len(woken_by_hub)


def flow() -> dict:
    """50 items, each sent once the previous one reached the consumer."""
    up, got = Upstream(), Event()

    def consume():
        items = []
        for batch in streams.paced(up, 30.0):
            items += batch
            got.set()
        return items

    def produce():
        for i in range(50):
            up.send(f"x{i}")
            got.wait()
            got.clear()
        up.send("end")

    gevent.spawn(produce)
    items, woken = hub_wakeups(consume)
    return {"items": len(items), "woken_by_hub": woken}


def together() -> dict:
    """20 items and the end sent in one write, while the consumer waits."""
    up = Upstream()

    def consume():
        return [(list(b), b.last) for b in streams.paced(up, 30.0)]

    gevent.spawn_later(0.01, up.send, *[f"x{i}" for i in range(20)], "end")
    batches, woken = hub_wakeups(consume)
    return {"batches": batches, "woken_by_hub": woken}


def away() -> dict:
    """The consumer is away (a slow client write: it waits in the hub) each
    time the next item arrives, so the reader's wait ends while the consumer
    holds the batch it was handed; and a wait that is not a socket read (as a
    finish's storage write) comes between two items."""
    up = Upstream()
    got = Event()

    def items():
        for i, item in enumerate(up):
            if i == 10:
                gevent.sleep(0.01)
            yield item

    def consume():
        out = []
        for batch in streams.paced(items(), 30.0):
            out.append(list(batch))
            got.set()
            gevent.sleep(0.02)  # writing to a slow client
        return out

    def produce():
        for i in range(20):
            up.send(f"x{i}")
            got.wait()
            got.clear()
        up.send("end")

    gevent.spawn(produce)
    batches = gevent.spawn(consume).get(timeout=30)
    flat = [i for b in batches for i in b]
    return {"items": flat, "last_empty": batches[-1] == []}


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


def leave_unabortable() -> dict:
    """The consumer leaves while the reader waits on an upstream that cannot
    be cut (boto3's): the reader stops at the next item, and closes it."""
    up = Upstream()

    def items():  # no abort()
        yield from up

    def consume():
        batches = streams.paced(items(), 30.0)
        for batch in batches:
            if batch:
                break
        gevent.spawn_later(0.05, up.send, "d")
        started = time.monotonic()
        batches.close()
        return up.closed.is_set(), time.monotonic() - started

    up.send("a")
    closed, seconds = gevent.spawn(consume).get(timeout=30)
    return {"closed": closed, "seconds": seconds}


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
