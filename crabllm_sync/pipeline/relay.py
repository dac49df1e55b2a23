"""The one relay: every streamed answer passes through relay(), watched by
its format's observer, and ends through Finish exactly once.

It runs in the stream reader (streams.paced) and ends one of four ways:
finished (on_response), failed (on_error: an upstream error, a stream that
stopped early, an error event in the stream, a bug), or cut short by the
client (GeneratorExit, or a read failing because the client's leave aborted
it): 499, charged for what was relayed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from crabllm_sync.errors import GatewayError
from crabllm_sync.pipeline.finish import internal
from crabllm_sync.streams import close_items

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.extensions import Extension
    from crabllm_sync.pipeline.finish import Finish


class Observer(Protocol):
    """What a format knows about its own stream (formats/*.py)."""

    # Whether extensions' on_chunk sees the items passed on (chat chunks).
    hooks_see_items: bool
    # Set by feed() when the item it passed on is itself the stream's failure.
    failure: GatewayError | None

    def first(self, item: Any, provider: str) -> None:
        """Check the first item, read while routing: raise to fail the attempt."""

    def feed(self, item: Any) -> Any:
        """Keep usage; the item to pass on (maybe rewritten), or None to drop it."""

    def end(self) -> None:
        """The upstream ended: raise an UpstreamError if it had not finished."""

    def interrupted(self) -> None:
        """The client left: settle ctx.usage for what was relayed."""


class PassThrough:
    """Items (audio bytes) passed on as they are; usage is set beforehand."""

    hooks_see_items = False
    failure: GatewayError | None = None

    def first(self, item: Any, provider: str) -> None:
        pass

    def feed(self, item: Any) -> Any:
        return item

    def end(self) -> None:
        pass

    def interrupted(self) -> None:
        pass


def relay(
    ctx: RequestContext,
    body: dict[str, Any],
    head: Iterable[Any],
    rest: Iterator[Any],
    observer: Observer,
    finish: Finish,
    extensions: Sequence[Extension],
    is_aborted: Callable[[], bool] = lambda: False,
) -> Iterator[Any]:
    """`head` then `rest`, through `observer`; `rest` is closed at the end,
    before the request is finished."""
    outcome: GatewayError | None = None
    finished = False
    try:
        for source in (head, rest):
            for item in source:
                out = observer.feed(item)
                if out is None:
                    continue
                if observer.hooks_see_items:
                    for ext in extensions:
                        ext.on_chunk(ctx, out)
                yield out
                if observer.failure is not None:
                    outcome = observer.failure
                    return
        observer.end()
        finished = True
    except Exception as exc:
        # A failed read after the client's leave aborted it is not a failure.
        if is_aborted():
            raise
        outcome = internal(exc)
        if outcome is exc:
            raise
        raise outcome from exc
    finally:
        close_items(rest)
        if finished:
            finish.succeeded(ctx, body, None)
        elif outcome is not None:
            finish.failed(ctx, outcome)
        else:
            observer.interrupted()
            finish.left(ctx, body)
