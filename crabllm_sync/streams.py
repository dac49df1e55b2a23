"""Relaying an upstream stream to a client: pauses become keep-alives, and a
client that leaves stops the upstream read at once.

Why a reader: the WSGI server only learns that a client left when a write
fails, and it can only write what the response iterator yields. During a
long upstream pause the read is blocked, so it must happen somewhere the
iterator can leave every `interval` to yield a keep-alive. Under gevent
(gunicorn's gevent worker) that is a greenlet the request switches to
directly, which hands back everything it read until its next read would
block (streams_inline.py: no trip through gevent's run queue per chunk);
elsewhere (werkzeug, tests) an OS thread handing items over through a queue.
Either way the package never imports gevent.
"""

from __future__ import annotations

import _thread
import logging
import queue
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from crabllm_sync import streams_inline
from crabllm_sync.errors import UpstreamError
from crabllm_sync.streams_inline import close_items

log = logging.getLogger(__name__)

T = TypeVar("T")

BUFFER = 64  # items read ahead of a slow client before the reader waits
PUT_POLL = 1.0  # seconds between checks that the client is still there
JOIN_TIMEOUT = 2.0  # seconds to wait for the reader once the upstream is aborted

_ITEM, _END, _ERROR = streams_inline.ITEM, streams_inline.END, streams_inline.ERROR


class Relay(Generic[T]):
    """An iterator that can also be aborted from another thread.

    `abort()` cuts the upstream connection under a read that is blocked right
    now (a generator cannot be closed while it runs); the reader then sees the
    read fail and closes the iterator itself. `items` may be set after
    construction, so they can ask `is_aborted`. A context manager: leaving
    the block closes the items (and so finishes the request).
    """

    def __init__(self, items: Iterator[T], abort: Callable[[], None]) -> None:
        self.items = items
        self._abort = abort
        self.is_aborted = False

    def __iter__(self) -> Relay[T]:
        return self

    def __next__(self) -> T:
        return next(self.items)

    def __enter__(self) -> Relay[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        close = getattr(self.items, "close", None)
        if close is not None:
            close()

    def abort(self) -> None:
        self.is_aborted = True
        self._abort()


def paced(items: Iterator[T], interval: float | None) -> Iterator[Batch[T]]:
    """Yield what `items` yields, in batches; an empty one after every
    `interval` s without an item (no keep-alives when `interval` is falsy:
    then one item per batch, read in the consumer's thread). The last batch
    of a stream that ended (not failed) has `last` set, empty or not.

    A batch is every item the reader had ready when the consumer woke (under
    gevent: every item it could read before a read would block): chunks
    that arrived in one network read leave in one client write instead of one
    write (a syscall, a chunked-encoding frame) each, and `batch.last` says the
    stream ended right after them, so the terminator can join that write too.
    Items are read by a reader (streams_inline.InlineReader under gevent, a
    thread elsewhere). When the consumer stops early (the
    client left: GeneratorExit here) the reader is told to stop, `items.abort()`
    is called if it exists, and the reader closes `items`. An exception from
    `items` is raised here, in the consumer, after the items that came before it.
    """
    if not interval:
        return _unpaced(items)
    return _paced(items, interval)


def _paced(items: Iterator[T], interval: float) -> Iterator[Batch[T]]:
    hub = streams_inline.gevent_hub()
    reader: _Reader = (
        streams_inline.InlineReader(items, hub) if hub else _ThreadReader(items)
    )
    done = False
    try:
        while not done:
            entries = reader.next_entries(interval)
            if not entries:
                yield Batch()
                continue
            batch: Batch[T] = Batch()
            error: BaseException | None = None
            for kind, value in entries:
                if kind == _ITEM:
                    batch.append(value)
                else:
                    done = True
                    batch.last = kind == _END
                    error = value if kind == _ERROR else None
            if batch or batch.last:
                yield batch
            if error is not None:
                raise error
    finally:
        reader.stop()


class _Reader(Protocol):
    """Reads `items` while the consumer waits at most `interval` for them."""

    def next_entries(self, interval: float) -> list[tuple[str, Any]]:
        """Entries read so far ((_ITEM, item)..., one _END or _ERROR last),
        or [] after `interval` s without one."""

    def stop(self) -> None:
        """The consumer is done: end the reader (and `items`) if still going."""


class _ThreadReader:
    """`items` read by a thread (a bare greenlet under gevent without the
    inline reader), handed over through a bounded queue."""

    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items
        self._q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=BUFFER)
        self._stop = _Flag()
        self._ended = False
        # A bare thread, not threading.Thread: its start-and-join handshake
        # cost ~75 us a stream, and it is joined only when the consumer leaves
        # early (an ended reader has closed `items` before it queues the end).
        self._finished = _thread.allocate_lock()
        self._finished.acquire()
        _thread.start_new_thread(_pump, (items, self._q, self._stop, self._finished))

    def next_entries(self, interval: float) -> list[tuple[str, Any]]:
        try:
            entry = self._q.get(timeout=interval)
        except queue.Empty:
            return []
        entries = [entry]
        while entry[0] == _ITEM:
            try:
                entry = self._q.get_nowait()
            except queue.Empty:
                break
            entries.append(entry)
        self._ended = entry[0] != _ITEM
        return entries

    def stop(self) -> None:
        self._stop.set()
        if self._ended:
            return
        abort = getattr(self._items, "abort", None)
        if abort is not None:
            abort()
        _drain(self._q)
        if not self._finished.acquire(timeout=JOIN_TIMEOUT):
            log.warning("a stream reader is still waiting on its upstream")


class _Flag:
    """Set once by the consumer, read by the reader: no waiting on it, so a
    plain attribute (threading.Event builds a Condition and two locks)."""

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class Batch(list[T], Generic[T]):
    """Items that were ready together; `last`: the stream ended after them.
    An empty batch that is not the last stands for a pause (a keep-alive)."""

    last = False

    @property
    def is_pause(self) -> bool:
        return not self and not self.last


def _unpaced(items: Iterator[T]) -> Iterator[Batch[T]]:
    """`items` one per batch, then an empty last batch; closing this closes
    `items`."""
    try:
        for item in items:
            batch: Batch[T] = Batch()
            batch.append(item)
            yield batch
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()
    end: Batch[T] = Batch()
    end.last = True
    yield end


def _pump(
    items: Iterator[Any], q: queue.Queue[tuple[str, Any]], stop: _Flag, finished: Any
) -> None:
    """The reader: move items into `q` until they end, fail or `stop` is set;
    release `finished` when it is done with `items`."""
    outcome: tuple[str, Any] = (_ERROR, UpstreamError("the stream reader stopped"))
    try:
        for item in items:
            if not _put(q, (_ITEM, item), stop):
                outcome = (_END, None)
                return
        outcome = (_END, None)
    except Exception as exc:  # handed to the consumer, which raises it
        outcome = (_ERROR, exc)
    finally:
        close_items(items)  # here: `items` belongs to this thread until it returns
        try:
            _put(q, outcome, stop)
        finally:
            finished.release()


def _put(q: queue.Queue[tuple[str, Any]], entry: tuple[str, Any], stop: _Flag) -> bool:
    """Queue `entry` unless the consumer left; False once it has."""
    while not stop.is_set():
        try:
            q.put(entry, timeout=PUT_POLL)
        except queue.Full:
            continue
        return not stop.is_set()
    return False


def _drain(q: queue.Queue[tuple[str, Any]]) -> None:
    """Empty `q` so a reader blocked on a full queue wakes up and sees `stop`."""
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return
