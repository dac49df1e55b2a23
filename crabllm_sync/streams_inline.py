"""Under gevent: the stream is read on the request's own greenlet stack,
switched to directly, not through gevent's run queue (streams.paced).

The reader is a bare greenlet that the request's greenlet switches into the
way it would resume a generator, and that switches straight back with each
item. A thread-style reader hands items over through a queue, and each
hand-over wakes the request through gevent's run queue: that second trip per
chunk is what put the 500-stream burst over its floor (bench/RESULTS.md).

Why a greenlet and not a plain call: a read can block in the middle of the
adapter's parsers (lines, SSE events, the relay), where nothing could yield a
keep-alive. While the reader waits on its socket in gevent's hub, a timer
wakes the request every `interval` to write a keep-alive, and that write is
where a client that left is noticed. Items read while the request is away
(writing to a slow client) are kept, up to BUFFER, and leave in one batch.

When the request leaves early, a reader parked between items gets
GreenletExit, which closes the items and so finishes the request (as gevent's
own kill would); a reader waiting on its socket is aborted (items.abort(): the
upstream socket is shut) and given JOIN_TIMEOUT to finish on its own, so a
finish already under way (its writes to storage) is never cut in half.
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


class InlineReader:
    """`items` read on a greenlet of their own, handed over by direct switches.

    next_entries(interval) gives the entries read so far (ITEM, then one END
    or ERROR last), or [] when `interval` passed without one; stop() ends the
    reader if it has not ended.
    """

    BUFFER = 64  # entries read ahead of a slow client before the reader parks
    JOIN_TIMEOUT = 2.0  # seconds a reader blocked on its upstream gets to end

    def __init__(self, items: Iterator[Any], hub: Any) -> None:
        self._items = items
        self._hub = hub
        self._request = getcurrent()
        self._reader = greenlet(self._run, parent=self._request)
        self._timer: Any = None  # wakes the request; one per wait length
        self._timer_seconds = 0.0
        self._ready: list[Entry] = []
        self._parked = True  # suspended between items (or not started yet)
        self._waiting = False  # the request waits for the reader's hand-over
        self._ended = False  # the last entry was handed over

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
        if not self._reader:  # never started: nothing read, nothing to wait for
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
        if not self._parked:
            # Blocked on its upstream: cut it, and let the read fail and the
            # relay finish (the hand-over parks it again).
            if abort is not None:
                abort()
            if not self._wait(self.JOIN_TIMEOUT):
                log.warning("a stream reader is still waiting on its upstream")
                return
            self._ready = []
        self._close_timer()
        if not self._reader.dead:
            # Parked between items: unwinding there closes the items.
            self._reader.throw(GreenletExit)

    def _wait(self, seconds: float) -> bool:
        """Run the reader until it hands something over (True) or `seconds`
        pass (False: it is then blocked on its upstream)."""
        self._waiting = True
        if self._timer is None or seconds != self._timer_seconds:
            self._close_timer()
            self._timer = self._hub.loop.timer(seconds)
            self._timer_seconds = seconds
        self._timer.start(self._request.switch, _PAUSE)
        try:
            if self._parked:
                self._parked = False
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
            close_items(self._items)
        self._hand(outcome)

    def _hand(self, entry: Entry) -> None:
        """Give `entry` to a waiting request at once; else keep it and read
        on, parking when the buffer is full or the stream is over."""
        self._ready.append(entry)
        if self._waiting:
            self._waiting = False
            self._timer.stop()
            self._parked = True
            self._request.switch(True)
            self._parked = False
        elif len(self._ready) >= self.BUFFER or entry[0] != ITEM:
            self._parked = True
            self._hub.switch()
            self._parked = False


def close_items(items: Any) -> None:
    """Close an upstream iterator (if it can be); a failure to is only logged."""
    close = getattr(items, "close", None)
    try:
        if close is not None:
            close()
    except Exception:
        log.exception("closing an upstream stream failed")
