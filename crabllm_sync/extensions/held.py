"""What a request holds on the shared storage from admission to its finish.

A Reservation is an amount added to a counter (the budget's nanodollars,
TPM's tokens) and settled to what the request used; a Lease is one of a
key's max_parallel_requests slots. Both are context managers for the step
that takes them: a block that raises gives back what it took (a request
refused after reserving), one that ends keeps it for the finish path
(pipeline/finish.py), whose on_response or on_error settles or releases it.
Each is given back at most once, however often it is asked to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crabllm_sync.extensions import quietly

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.storage import Storage


class Reservation:
    """`amount` added to `counter` by take(), until settle() or a refund."""

    __slots__ = ("_held", "amount", "counter", "storage", "ttl", "what")

    def __init__(
        self,
        what: str,
        storage: Storage,
        counter: str,
        amount: int,
        ttl: float | None,
    ) -> None:
        self.what = what  # the extension, for the log
        self.storage = storage
        self.counter = counter
        self.amount = amount
        self.ttl = ttl
        self._held = False

    def take(self) -> int:
        """Add the amount; the counter's total with it (an atomic incr)."""
        total = self.storage.incr(self.counter, self.amount, self.ttl)
        self._held = True
        return total

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.refund()

    def refund(self) -> None:
        """Give the whole amount back (the request was refused)."""
        if self._held:
            self._held = False
            if self.amount:
                self.storage.incr(self.counter, -self.amount, self.ttl)

    def settle(self, used: int) -> None:
        """Turn the reservation into what the request `used` (after the
        answer is decided: a storage failure is logged, not raised)."""
        if self._held:
            self._held = False
            delta = used - self.amount
            if delta:
                quietly(
                    self.what,
                    lambda: self.storage.incr(self.counter, delta, self.ttl),
                )


def settle(ctx: RequestContext, state: str, used: int) -> None:
    """Settle the Reservation the request keeps at ctx.state[state], if any;
    it is taken out, so a request settles once."""
    held: Reservation | None = ctx.state.pop(state, None)
    if held is not None:
        held.settle(used)


class Lease:
    """One slot, taken by its holder's incr returning 1; renewed while a long
    stream runs and deleted when released, or lost to its TTL when the worker
    dies, so a slot never leaks."""

    __slots__ = ("renewed", "slot", "storage", "ttl")

    def __init__(self, storage: Storage, slot: str, ttl: float, now: float) -> None:
        self.storage = storage
        self.slot: str | None = slot
        self.ttl = ttl
        self.renewed = now  # monotonic seconds

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.release()

    def renew(self, now: float) -> None:
        slot = self.slot
        if slot is not None:
            self.renewed = now
            quietly("concurrency", lambda: self.storage.set(slot, b"1", self.ttl))

    def release(self) -> None:
        slot, self.slot = self.slot, None
        if slot is not None:
            quietly("concurrency", lambda: self.storage.delete(slot))


def release(ctx: RequestContext, state: str) -> None:
    """Release the Lease the request keeps at ctx.state[state], if any."""
    lease: Lease | None = ctx.state.pop(state, None)
    if lease is not None:
        lease.release()
