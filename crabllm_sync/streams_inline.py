"""Under gevent: the stream is read on a greenlet the request switches to
directly, and handed back in batches (streams.paced).

A reader greenlet that hands items over through a queue wakes the request
through gevent's run queue for every hand-over: a second trip after the
socket's own. Here the request switches into the reader the way it resumes
a generator, and the reader switches straight back.

Batches: while the request waits, the reader does not hand an item over at
once; it reads on, and hands over everything it holds when its next read
would block, when the stream ends, or when BUFFER items are held. "Would
block" is gevent's own signal: a greenlet about to wait switches to the hub,
and the hub first calls that greenlet's `switch_out()`. So chunks that arrive
together (one network read, however the adapter's parsers split them) leave
in one client write, and a chunk that arrives alone leaves at once.

Why a greenlet and not a plain call: a read can block in the middle of the
adapter's parsers, where nothing could yield a keep-alive. While the reader
waits on its socket, a hub timer wakes the request every `interval` to write
a keep-alive, and that write is where a client that left is noticed.

A hand-over from `switch_out()` leaves the reader inside gevent's wait, its
watcher armed. The request resumes it there (the wait then goes on), or, if
the request is away (writing to a slow client) when the wait ends, the hub
wakes it there; the wake-up is then passed on from a loop callback, since
returning from `switch_out()` goes back to the hub.

When the request leaves early, a reader parked between items gets
GreenletExit, which closes the items and so finishes the request (as gevent's
own kill would). A reader in a read (or in the finish's writes) is aborted
(items.abort(): the upstream socket is shut) and given JOIN_TIMEOUT to reach
its outcome or its next item, where it unwinds the same way; so a finish
under way is never cut in half, and a transport that cannot be aborted
(boto3) stops at its next event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from typing import Any, TypeVar

from greenlet import GreenletExit, getcurrent, greenlet

log = logging.getLogger(__name__)

T = TypeVar("T")

ITEM, END, ERROR = "item", "end", "error"
Entry = tuple[str, Any]

_PAUSE = object()  # the timer's wake-up: `interval` passed without an item
_RESUME = object()  # the request asks the parked reader for more

# Where a parked reader is suspended (only the request resumes it from there).
_AT_START, _AT_ITEM, _IN_READ = "start", "item", "read"


def gevent_hub() -> Any:
    """gevent's hub when this process runs under gevent's monkey-patching and
    the caller is a greenlet other than the hub; else None. (The package never
    imports gevent: it is asked only if already loaded.)"""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("socket"):
        return None
    from gevent import get_hub

    hub = get_hub()
    return None if getcurrent() is hub else hub


class _ReaderGreenlet(greenlet):
    """The reader's greenlet: gevent's hub calls `switch_out()` on a greenlet
    about to wait in it (gevent.hub.Hub.switch)."""

    def __init__(self, owner: InlineReader, parent: Any) -> None:
        super().__init__(owner._run, parent)
        self.owner = owner

    def switch_out(self) -> None:
        self.owner._switch_out()


class InlineReader:
    """`items` read on a greenlet of their own, handed over by direct switches.

    next_entries(interval) gives the entries read so far (ITEM, then one END
    or ERROR last), or [] when `interval` passed without one; stop() ends the
    reader if it has not ended.
    """

    BUFFER = 64  # entries read ahead of a slow client before the reader parks
    JOIN_TIMEOUT = 2.0  # seconds a reader in a read gets to end once aborted

    def __init__(self, items: Iterator[Any], hub: Any) -> None:
        self._items = items
        self._hub = hub
        self._request = getcurrent()
        self._reader = _ReaderGreenlet(self, self._request)
        self._timer: Any = None  # wakes the request; one per wait length
        self._timer_seconds = 0.0
        self._ready: list[Entry] = []
        self._parked: str | None = _AT_START
        self._waiting = False  # the request waits for the reader's hand-over
        self._ended = False  # the last entry was handed over
        self._stopping = False  # the request left: only the outcome is wanted
        self._parking = False  # the reader's own park, not a wait on I/O
        self._redeliver: object | None = None  # a pending wake-up (see module doc)

    # -- the request's side --------------------------------------------------

    def next_entries(self, interval: float) -> list[Entry]:
        if not self._ready:
            self._wait(interval)
        out, self._ready = self._ready, []
        if out and out[-1][0] != ITEM:
            self._ended = True
            self._close_timer()
            self._reader.switch(_RESUME)  # lets it return
        return out

    def stop(self) -> None:
        if self._ended or self._reader.dead:
            self._close_timer()
            return
        if self._parked == _AT_START:  # nothing read, nothing to wait for
            close_items(self._items)
            return
        abort = getattr(self._items, "abort", None)
        if getcurrent() is not self._request:
            # Closed from another greenlet (a response collected unclosed):
            # cut the upstream only; switching from here could strand this
            # greenlet. A parked reader is closed when it is collected.
            if abort is not None:
                abort()
            return
        self._stopping = True
        if self._parked != _AT_ITEM:
            # In a read, or in the finish's writes: cut the upstream, and let
            # the read fail and the relay finish (its outcome parks it).
            if abort is not None:
                abort()
            self._ready = []
            if not self._wait(self.JOIN_TIMEOUT):
                log.warning("a stream reader is still waiting on its upstream")
                # It ends on its own at its next item; then back to the hub,
                # not into this greenlet, which will be elsewhere by then.
                self._reader.parent = self._hub
                return
            self._ready = []
        self._close_timer()
        if not self._reader.dead:
            # Parked between items: unwinding there closes the items.
            self._reader.throw(GreenletExit)

    def _wait(self, seconds: float) -> bool:
        """Run the reader until it hands something over (True) or `seconds`
        pass (False: it is then waiting on its upstream)."""
        self._waiting = True
        if self._timer is None or seconds != self._timer_seconds:
            self._close_timer()
            self._timer = self._hub.loop.timer(seconds)
            self._timer_seconds = seconds
        self._timer.start(self._request.switch, _PAUSE)
        try:
            if self._parked is not None:
                self._parked = None
                got = self._reader.switch(_RESUME)
            else:
                got = self._hub.switch()
        finally:
            self._waiting = False
            self._timer.stop()
        return got is not _PAUSE

    def _close_timer(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    # -- the reader's side ---------------------------------------------------

    def _run(self, _: object) -> None:
        # GreenletExit (the request left) unwinds through here, closing items.
        outcome: Entry
        try:
            for item in self._items:
                self._hand((ITEM, item))
            outcome = (END, None)
        except Exception as exc:  # handed to the request, which raises it
            outcome = (ERROR, exc)
        finally:
            self._redeliver = None
            close_items(self._items)
        self._hand(outcome)

    def _hand(self, entry: Entry) -> None:
        """Keep `entry`. Hand what is held to a waiting request once the
        stream is over or BUFFER is reached (else read on: the next read that
        would block hands it over, in _switch_out); park when the request is
        away and the buffer is full or the stream over."""
        self._redeliver = None
        last = entry[0] != ITEM
        if self._stopping:
            # The request left: its stop() waits for the outcome, or for the
            # next item to unwind at (a transport that cannot be aborted).
            if self._waiting:
                if last:
                    self._ready.append(entry)
                self._give(_AT_ITEM)
            elif not last:
                raise GreenletExit  # stop() stopped waiting: end at this item
            return
        self._ready.append(entry)
        if not last and len(self._ready) < self.BUFFER:
            return
        if self._waiting:
            self._give(_AT_ITEM)
            return
        self._parked = _AT_ITEM
        self._parking = True
        try:
            self._hub.switch()  # only the request resumes it
        finally:
            self._parking = False

    def _give(self, where: str) -> object:
        """Switch to the waiting request with what is held; what resumed us."""
        self._waiting = False
        self._timer.stop()
        self._parked = where
        try:
            return self._request.switch(True)
        finally:
            self._parked = None

    def _switch_out(self) -> None:
        """The reader is about to wait in the hub: a read that would block (or
        the finish's I/O). A waiting request gets what is held first."""
        self._redeliver = None
        if self._parking or self._stopping or not self._waiting or not self._ready:
            return
        got = self._give(_IN_READ)
        if got is _RESUME:
            return  # back to the wait, still armed
        # The wait ended while the request was away; returning from here goes
        # back to the hub, so the wake-up is passed on from the next callback.
        token = self._redeliver = object()
        self._hub.loop.run_callback(self._deliver, token, got)

    def _deliver(self, token: object, got: object) -> None:
        if self._redeliver is token and not self._reader.dead:
            self._redeliver = None
            self._reader.switch(got)


def close_items(items: Any) -> None:
    """Close an upstream iterator (if it can be); a failure to is only logged."""
    close = getattr(items, "close", None)
    try:
        if close is not None:
            close()
    except Exception:
        log.exception("closing an upstream stream failed")
