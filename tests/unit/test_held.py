"""What a request holds on storage (extensions/held.py): a block that raises
gives it back, one that ends keeps it, and it is given back at most once."""

from __future__ import annotations

import pytest

from crabllm_sync.auth import Principal
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import QuotaExceededError
from crabllm_sync.extensions.held import Lease, Reservation, release, settle
from crabllm_sync.storage.memory import MemoryStorage


def count(storage: MemoryStorage, key: str) -> int:
    return int(storage.get(key) or 0)


def context() -> RequestContext:
    return RequestContext("r", "chat", Principal(name="k"), 0.0, 0.0)


def test_a_refusal_inside_the_block_gives_the_reservation_back():
    storage = MemoryStorage()
    storage.incr("c", 7)
    held = Reservation("budget", storage, "c", 5, None)
    with pytest.raises(QuotaExceededError), held:
        assert held.take() == 12
        raise QuotaExceededError("over")
    assert count(storage, "c") == 7
    held.settle(3)  # refunded already: nothing more moves
    held.refund()
    assert count(storage, "c") == 7


def test_a_kept_reservation_settles_to_what_was_used_once():
    storage = MemoryStorage()
    held = Reservation("budget", storage, "c", 5, None)
    with held:
        held.take()
    assert count(storage, "c") == 5
    ctx = context()
    ctx.state["budget"] = held
    settle(ctx, "budget", 2)
    settle(ctx, "budget", 2)
    held.settle(9)
    assert count(storage, "c") == 2
    assert "budget" not in ctx.state


def test_a_failed_take_refunds_nothing():
    storage = MemoryStorage()
    storage.set("c", b"not a number")
    held = Reservation("budget", storage, "c", 5, None)
    with pytest.raises(ValueError), held:
        held.take()
    assert storage.get("c") == b"not a number"


def test_a_lease_is_released_once_and_by_a_block_that_raises():
    storage = MemoryStorage()
    assert storage.incr("conc:k:0", 1, 60) == 1
    lease = Lease(storage, "conc:k:0", 60, now=0.0)
    with lease:
        pass  # kept for the finish path
    assert storage.get("conc:k:0") is not None
    with pytest.raises(RuntimeError), lease:
        raise RuntimeError("refused after the slot was taken")
    assert storage.get("conc:k:0") is None
    # Another request takes the slot; the first lease's later release must
    # not free the slot the second one holds.
    assert storage.incr("conc:k:0", 1, 60) == 1
    ctx = context()
    ctx.state["concurrency"] = lease
    release(ctx, "concurrency")
    lease.renew(5.0)
    assert storage.get("conc:k:0") is not None
