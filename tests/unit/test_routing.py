"""Routing, the breaker and the stream reader, with seeded rng and a fake clock."""

from __future__ import annotations

import logging
import random
import socket
import threading
from collections import Counter
from typing import Any

import pytest

from crabllm_sync.config import RoutingConfig
from crabllm_sync.errors import (
    AllDeploymentsFailedError,
    UnsupportedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from crabllm_sync.health import CLOSED, HALF_OPEN, OPEN, UNKNOWN, Health
from crabllm_sync.routing import (
    BACKOFF_BASE,
    Deployment,
    backoff,
    call_with_retries,
    exhausted,
    weighted_order,
)
from crabllm_sync.storage.memory import MemoryStorage
from crabllm_sync.streams import Relay, paced


def dep(name: str, weight: float = 1.0, **over: Any) -> Deployment:
    return Deployment(
        provider=name,
        kind="openai",
        model="m",
        base_url=f"http://{name}",
        api_key=f"sk-secret-{name}",
        weight=weight,
        **over,
    )


class Clock:
    """Time that moves only when told (both wall and monotonic in these tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def health_for(
    clock: Clock, *, cooldown: float = 30, threshold: int = 3, storage: Any = None
) -> Health:
    return Health(
        storage if storage is not None else MemoryStorage(clock=clock),
        RoutingConfig(cooldown_seconds=cooldown, failure_threshold=threshold),
        clock=clock,
    )


def http_error(status: int, retry_after: float | None = None) -> UpstreamError:
    return UpstreamError(
        f"HTTP {status}", upstream_status=status, retry_after=retry_after
    )


class Script:
    """fn for call_with_retries: raises or returns per provider, records calls."""

    def __init__(self, outcomes: dict[str, list[Any]], clock: Clock | None = None):
        self.outcomes = {k: list(v) for k, v in outcomes.items()}
        self.calls: list[tuple[str, float]] = []
        self.clock = clock

    def __call__(self, d: Deployment) -> str:
        self.calls.append((d.provider, d.timeout))
        todo = self.outcomes[d.provider]
        outcome = todo.pop(0) if len(todo) > 1 else todo[0]
        if isinstance(outcome, tuple):  # (seconds it takes, outcome)
            took, outcome = outcome
            if self.clock is not None:
                self.clock.sleep(took)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    @property
    def providers(self) -> list[str]:
        return [p for p, _ in self.calls]


# -- weighted pick -----------------------------------------------------------


def test_weighted_pick_follows_weights_within_bounds():
    deps = [dep("a", 5), dep("b", 3), dep("c", 2)]
    rng = random.Random(1234)
    n = 20000
    firsts = Counter(weighted_order(deps, rng)[0].provider for _ in range(n))
    for name, share in (("a", 0.5), ("b", 0.3), ("c", 0.2)):
        # 4 standard deviations of a binomial share at n = 20000 is < 0.015.
        assert abs(firsts[name] / n - share) < 0.015, firsts


def test_fallback_order_is_the_rest_by_descending_weight():
    deps = [dep("light", 1), dep("heavy", 9), dep("mid", 4)]
    rng = random.Random(7)
    seen_first = set()
    for _ in range(300):
        order = [d.provider for d in weighted_order(deps, rng)]
        seen_first.add(order[0])
        rest = [d for d in ("heavy", "mid", "light") if d != order[0]]
        assert order[1:] == rest
    assert seen_first == {"light", "heavy", "mid"}


def test_zero_weight_is_never_picked_first_when_others_have_weight():
    deps = [dep("zero", 0), dep("one", 1)]
    rng = random.Random(3)
    assert {weighted_order(deps, rng)[0].provider for _ in range(500)} == {"one"}


def test_all_zero_weights_still_route():
    deps = [dep("a", 0), dep("b", 0)]
    assert [d.provider for d in weighted_order(deps, random.Random(0))] == ["a", "b"]


def test_backoff_doubles_with_jitter_in_half_to_full():
    rng = random.Random(5)
    for attempt in range(5):
        b = BACKOFF_BASE * 2**attempt
        for _ in range(200):
            assert b / 2 <= backoff(attempt, rng) <= b


# -- the retry loop ------------------------------------------------------------


def test_transient_failures_are_retried_exactly_max_retries_times():
    clock = Clock()
    fn = Script({"a": [http_error(500), http_error(502), "ok"]})
    result, used = call_with_retries(
        [dep("a", max_retries=2)], fn, rng=random.Random(0), sleep=clock.sleep
    )
    assert (result, used.provider) == ("ok", "a")
    assert fn.providers == ["a", "a", "a"]
    # Two backoffs: [0.05, 0.1] then [0.1, 0.2].
    assert 0.15 <= clock.now - 1000.0 <= 0.3


def test_spent_retries_fall_back_in_order():
    fn = Script({"a": [http_error(500)], "b": [http_error(503)], "c": ["ok"]})
    deps = [dep("a", max_retries=1), dep("b", max_retries=2), dep("c")]
    result, used = call_with_retries(
        deps, fn, rng=random.Random(0), sleep=lambda s: None
    )
    assert used.provider == "c"
    assert fn.providers == ["a", "a", "b", "b", "b", "c"]


def test_non_transient_4xx_is_raised_at_once_without_fallback():
    fn = Script({"a": [http_error(400)], "b": ["ok"]})
    with pytest.raises(UpstreamError) as exc:
        call_with_retries(
            [dep("a"), dep("b")], fn, rng=random.Random(0), sleep=lambda s: None
        )
    assert exc.value.upstream_status == 400
    assert fn.providers == ["a"]


def test_short_retry_after_is_waited_long_one_moves_on():
    clock = Clock()
    fn = Script({"a": [http_error(429, retry_after=3.0), "ok"]})
    call_with_retries([dep("a")], fn, rng=random.Random(0), sleep=clock.sleep)
    assert clock.now - 1000.0 == pytest.approx(3.0)  # Retry-After beats backoff

    clock = Clock()
    fn = Script({"a": [http_error(429, retry_after=60.0)], "b": ["ok"]})
    _, used = call_with_retries(
        [dep("a"), dep("b")], fn, rng=random.Random(0), sleep=clock.sleep
    )
    assert used.provider == "b"
    assert fn.providers == ["a", "b"]
    assert clock.now == 1000.0


def test_all_timeouts_is_504():
    fn = Script({"a": [UpstreamTimeoutError("t")], "b": [UpstreamTimeoutError("t")]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a", max_retries=0), dep("b", max_retries=0)],
            fn,
            rng=random.Random(0),
            sleep=lambda s: None,
            model="m",
        )
    assert exc.value.http_status == 504
    assert exc.value.code == "upstream_timeout"
    assert (
        exc.value.message
        == "every deployment of 'm' failed: a (timed out), b (timed out)"
    )


def test_all_rate_limited_is_503_with_the_soonest_retry_after():
    fn = Script(
        {
            "a": [http_error(429, retry_after=40)],
            "b": [http_error(429, retry_after=7.2)],
        }
    )
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a"), dep("b")], fn, rng=random.Random(0), sleep=lambda s: None
        )
    assert exc.value.http_status == 503
    assert exc.value.headers["Retry-After"] == "8"


def test_mixed_failures_are_502_and_the_message_names_providers_not_keys():
    fn = Script({"a": [http_error(500)], "b": [UpstreamTimeoutError("b: timed out")]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a", max_retries=2), dep("b", max_retries=0)],
            fn,
            rng=random.Random(0),
            sleep=lambda s: None,
            model="m",
        )
    err = exc.value
    assert err.http_status == 502
    assert err.message == (
        "every deployment of 'm' failed: a (3 attempts, last: HTTP 500: HTTP 500), "
        "b (timed out)"
    )
    assert "sk-secret" not in err.message


def test_exhausted_with_nothing_tried_is_503():
    err = exhausted("m", [], [(dep("a"), 12.3)])
    assert err.http_status == 503
    assert err.headers["Retry-After"] == "13"
    assert err.message == (
        "no deployment of 'm' is available: a (cooling down, retry in 13s)"
    )


# -- the deadline ----------------------------------------------------------------


def test_deadline_stops_retrying_and_answers_504():
    clock = Clock()
    fn = Script({"a": [(4.0, http_error(500))], "b": ["ok"]}, clock)
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a", max_retries=10, timeout=30), dep("b")],
            fn,
            rng=random.Random(0),
            sleep=clock.sleep,
            model="m",
            deadline=1000.0 + 10.0,
            now=clock,
        )
    assert exc.value.http_status == 504
    assert exc.value.message.startswith("the request deadline passed before 'm'")
    # 4 s per attempt: attempts start at ~0, ~4.05, ~8.15; none after 10 s.
    assert fn.providers == ["a", "a", "a"]
    # The last attempt only had the time left, not its full 30 s timeout.
    assert fn.calls[-1][1] < 2.0


def test_a_wait_that_would_outlast_the_deadline_is_not_taken():
    clock = Clock()
    fn = Script({"a": [http_error(429, retry_after=3.0), "ok"]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a", max_retries=3)],
            fn,
            rng=random.Random(0),
            sleep=clock.sleep,
            deadline=1000.0 + 2.0,
            now=clock,
        )
    assert exc.value.http_status == 504
    assert fn.providers == ["a"]
    assert clock.now == 1000.0  # it did not sleep into the deadline


def test_rate_limited_without_retry_after_still_tells_the_client_when():
    err = exhausted("m", [(dep("a"), http_error(429))])
    assert err.http_status == 503
    assert err.headers["Retry-After"] == "1"


def test_deadline_already_passed_calls_nothing():
    clock = Clock()
    fn = Script({"a": ["ok"]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a")], fn, rng=random.Random(0), deadline=999.0, now=clock
        )
    assert exc.value.http_status == 504
    assert fn.calls == []


def test_a_timeout_we_imposed_does_not_count_against_the_provider():
    clock = Clock()
    health = health_for(clock, threshold=1)
    fn = Script({"a": [(0.5, UpstreamTimeoutError("t"))]}, clock)
    with pytest.raises(AllDeploymentsFailedError):
        call_with_retries(
            [dep("a", timeout=30)],
            fn,
            rng=random.Random(0),
            sleep=clock.sleep,
            health=health,
            deadline=1000.5,
            now=clock,
        )
    assert health.state(dep("a")).state == CLOSED


# -- the breaker -------------------------------------------------------------------


def test_breaker_opens_at_the_threshold_and_stops_retries_there():
    clock = Clock()
    health = health_for(clock, threshold=3)
    fn = Script({"a": [http_error(500)], "b": ["ok"]})
    _, used = call_with_retries(
        [dep("a", max_retries=9), dep("b")],
        fn,
        rng=random.Random(0),
        sleep=clock.sleep,
        health=health,
    )
    assert used.provider == "b"
    assert fn.providers == ["a", "a", "a", "b"]
    assert health.state(dep("a")).state == OPEN


def test_cooling_deployment_is_skipped_by_later_requests():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=30)
    health.failed(dep("a"), health.admit(dep("a")))
    fn = Script({"a": ["from a"], "b": ["from b"]})
    result, _ = call_with_retries(
        [dep("a"), dep("b")], fn, rng=random.Random(0), health=health
    )
    assert result == "from b"
    assert fn.providers == ["b"]


def test_single_cooling_deployment_fails_fast_with_503_and_retry_after():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=30)
    health.failed(dep("a"), health.admit(dep("a")))
    clock.sleep(18.5)
    fn = Script({"a": ["ok"]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries([dep("a")], fn, rng=random.Random(0), health=health)
    assert fn.calls == []
    assert exc.value.http_status == 503
    assert exc.value.headers["Retry-After"] == "12"


def test_failures_must_be_consecutive():
    clock = Clock()
    health = health_for(clock, threshold=3)
    a = dep("a")
    for _ in range(5):
        health.failed(a, health.admit(a))
        health.failed(a, health.admit(a))
        health.succeeded(a, health.admit(a))
    assert health.state(a).state == CLOSED
    assert health.state(a).consecutive_failures == 0


def test_half_open_admits_exactly_one_probe():
    clock = Clock()
    health = health_for(clock, threshold=2, cooldown=30)
    a = dep("a")
    assert not health.failed(a, health.admit(a))
    assert health.failed(a, health.admit(a))
    assert health.state(a).state == OPEN
    assert not health.admit(a).allowed
    clock.sleep(30)
    assert health.state(a).state == HALF_OPEN
    admissions = [health.admit(a) for _ in range(5)]
    assert [x.is_probe for x in admissions] == [True, False, False, False, False]
    assert [x.allowed for x in admissions] == [True, False, False, False, False]
    health.succeeded(a, admissions[0])
    assert health.state(a).state == CLOSED
    assert health.admit(a).allowed


def test_failed_probe_reopens_for_a_full_cooldown():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=30)
    a = dep("a")
    health.failed(a, health.admit(a))
    clock.sleep(31)
    probe = health.admit(a)
    assert probe.is_probe
    assert health.failed(a, probe)
    state = health.state(a)
    assert state.state == OPEN
    assert state.cooling_until == pytest.approx(clock.now + 30)
    clock.sleep(30)
    assert health.admit(a).is_probe  # the next probe, not stuck


def test_a_probe_that_vanished_is_replaced_after_its_lease():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a", timeout=5)
    health.failed(a, health.admit(a))
    clock.sleep(10)
    assert health.admit(a).is_probe  # ... and this caller never reports back
    assert not health.admit(a).allowed
    clock.sleep(5 + 5 + 1)  # the lease: timeout + connect + 1
    assert health.admit(a).is_probe


def test_probe_ended_by_a_client_error_frees_the_probe():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a")
    health.failed(a, health.admit(a))
    clock.sleep(10)
    fn = Script({"a": [http_error(400)]})
    with pytest.raises(UpstreamError):
        call_with_retries([a], fn, rng=random.Random(0), health=health)
    assert health.state(a).state == HALF_OPEN
    assert health.admit(a).is_probe


class Cancelled(BaseException):
    """What a greenlet killed mid-attempt sees (gevent's GreenletExit)."""


def test_probe_left_by_an_exception_routing_does_not_catch_is_given_back():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a")
    health.failed(a, health.admit(a))
    clock.sleep(10)
    fn = Script({"a": [Cancelled()]})
    with pytest.raises(Cancelled):
        call_with_retries([a], fn, rng=random.Random(0), health=health)
    assert health.state(a).state == HALF_OPEN
    assert health.admit(a).is_probe  # not held until the lease runs out


def test_probe_cut_short_by_the_deadline_is_given_back():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a", timeout=30)
    health.failed(a, health.admit(a))
    clock.sleep(10)
    cut = UpstreamTimeoutError("a: timed out connecting", provider="a")
    fn = Script({"a": [(5, cut)]}, clock)
    with pytest.raises(AllDeploymentsFailedError):
        call_with_retries(
            [a],
            fn,
            rng=random.Random(0),
            health=health,
            deadline=clock() + 5,
            now=clock,
        )
    assert health.state(a).state == HALF_OPEN
    assert health.admit(a).is_probe


def test_a_ticket_reports_each_failure_and_releases_a_probe_once():
    clock = Clock()
    storage = MemoryStorage(clock=clock)
    health = health_for(clock, threshold=3, storage=storage)
    a = dep("a")
    with health.ticket(a) as ticket:
        assert not ticket.failed()
        assert not ticket.failed()
    assert health.state(a).consecutive_failures == 2
    health.failed(a, health.admit(a))
    clock.sleep(30)
    with health.ticket(a) as probe:
        assert probe.is_probe
        probe.released()
        assert health.admit(a).is_probe  # given back: the next caller probes
    # The block's end did not release a second time (that one's probe stands).
    assert not health.admit(a).allowed


def test_probe_gets_one_attempt_not_the_retries():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a", max_retries=5)
    health.failed(a, health.admit(a))
    clock.sleep(10)
    fn = Script({"a": [http_error(500)]})
    with pytest.raises(AllDeploymentsFailedError):
        call_with_retries(
            [a], fn, rng=random.Random(0), sleep=clock.sleep, health=health
        )
    assert fn.providers == ["a"]
    assert health.state(a).state == OPEN


def test_a_healthy_read_is_trusted_for_a_moment_then_another_workers_failures_count():
    """Two Health objects over one storage are two workers. A worker that read
    no failures does not read again for `fresh_for` seconds (no storage round
    trip per request); after that it sees what the other worker counted."""
    clock = Clock()
    storage = MemoryStorage(clock=clock)
    ticks = [0.0]
    config = RoutingConfig(cooldown_seconds=30, failure_threshold=2)

    def worker() -> Health:
        return Health(
            storage, config, clock=clock, monotonic=lambda: ticks[0], fresh_for=1.0
        )

    mine, other = worker(), worker()
    a = dep("a")
    assert mine.admit(a).allowed  # reads: no failures
    for _ in range(2):
        other.failed(a, other.admit(a))
    assert other.state(a).state == OPEN
    ticks[0] = 0.5
    assert mine.admit(a).allowed  # still within fresh_for
    ticks[0] = 1.01
    assert not mine.admit(a).allowed  # read again: cooling


def test_a_workers_own_failure_is_seen_at_once():
    clock = Clock()
    health = Health(
        MemoryStorage(clock=clock),
        RoutingConfig(cooldown_seconds=30, failure_threshold=1),
        clock=clock,
        monotonic=lambda: 0.0,  # the memo would never expire on its own
    )
    a = dep("a")
    assert health.admit(a).allowed
    health.failed(a, health.admit(a))
    assert not health.admit(a).allowed


def test_zero_cooldown_turns_the_breaker_off():
    clock = Clock()
    health = health_for(clock, cooldown=0, threshold=1, storage=BrokenStorage())
    a = dep("a")
    assert not health.failed(a, health.admit(a))
    assert health.admit(a).allowed
    assert BrokenStorage.calls == 0


def test_keys_of_models_with_colons_do_not_collide():
    clock = Clock()
    health = health_for(clock, threshold=1)
    one = Deployment("p:x", "openai", "m", "http://x")
    two = Deployment("p", "openai", "x:m", "http://x")
    health.failed(one, health.admit(one))
    assert health.state(one).state == OPEN
    assert health.state(two).state == CLOSED


def test_snapshot_lists_every_deployment():
    clock = Clock()
    deps = [dep("a"), dep("b")]
    health = Health(
        MemoryStorage(clock=clock),
        RoutingConfig(cooldown_seconds=30, failure_threshold=1),
        deployments=deps,
        clock=clock,
    )
    health.failed(deps[1], health.admit(deps[1]))
    rows = health.snapshot()
    assert [(r.provider, r.state, r.consecutive_failures) for r in rows] == [
        ("a", CLOSED, 0),
        ("b", OPEN, 1),
    ]
    assert rows[1].cooling_until == pytest.approx(clock.now + 30)


class BrokenStorage:
    """A store whose every call fails (a database that went away)."""

    calls = 0

    def _fail(self, *a: Any, **kw: Any) -> Any:
        BrokenStorage.calls += 1
        raise OSError("storage is down")

    get = set = incr = list_prefix = delete = _fail

    def close(self) -> None:
        pass


def test_storage_failure_fails_open_and_warns(caplog):
    clock = Clock()
    health = health_for(clock, threshold=1, storage=BrokenStorage())
    a = dep("a")
    fn = Script({"a": [http_error(500), "ok"]})
    with caplog.at_level(logging.WARNING, logger="crabllm_sync.health"):
        result, _ = call_with_retries(
            [a], fn, rng=random.Random(0), sleep=clock.sleep, health=health
        )
    assert result == "ok"
    assert fn.providers == ["a", "a"]
    assert health.state(a).state == UNKNOWN
    assert "treating it as healthy" in caplog.text


# -- the stream reader ---------------------------------------------------------------


def test_paced_yields_empty_batches_during_pauses_and_everything_else_in_order():
    gate = threading.Event()

    def items():
        yield 1
        gate.wait(10)
        yield 2
        yield 3

    batches = []
    for batch in paced(items(), 0.02):
        batches.append(batch)
        if sum(1 for b in batches if not b) == 3:
            gate.set()
    assert [x for b in batches for x in b] == [1, 2, 3]
    assert batches[0] == [1] and sum(1 for b in batches if not b) >= 3
    assert batches[-1].last and not any(b.last for b in batches[:-1])


def test_items_ready_together_come_in_one_batch_that_says_it_is_the_last():
    """What the reader queued before the consumer woke is one batch (one
    client write); an end queued with them marks that batch last."""
    release = threading.Event()
    ready = threading.Event()

    def items():
        yield "first"
        release.wait(10)
        yield from ["a", "b", "c"]
        ready.set()

    def gated():
        # The consumer takes its second batch only once the reader has queued
        # the last three items and the end: wait on the reader, not the clock.
        it = items()
        yield next(it)
        yield from it

    batches = paced(gated(), 5)
    first = next(batches)
    assert list(first) == ["first"] and not first.last
    release.set()
    assert ready.wait(10)
    rest = next(batches)
    # The end may be queued a moment after `ready`: then it comes alone.
    if rest.last:
        assert list(rest) == ["a", "b", "c"]
    else:
        assert list(rest) == ["a", "b", "c"]
        tail = next(batches)
        assert list(tail) == [] and tail.last
    with pytest.raises(StopIteration):
        next(batches)


def test_without_an_interval_each_item_is_a_batch_and_an_empty_last_one_ends_it():
    closed = []

    def items():
        try:
            yield from [1, 2]
        finally:
            closed.append(True)

    batches = list(paced(items(), None))
    assert [list(b) for b in batches] == [[1], [2], []]
    assert [b.last for b in batches] == [False, False, True]
    assert not any(b.is_pause for b in batches)
    assert closed == [True]


def test_paced_raises_the_readers_error_in_the_consumer_after_what_came_before():
    def items():
        yield 1
        raise UpstreamError("broken", upstream_status=502)

    it = paced(items(), 5)
    got = []
    with pytest.raises(UpstreamError, match="broken"):
        for batch in it:
            got.extend(batch)
            assert not batch.last
    assert got == [1]


def test_leaving_early_aborts_a_blocked_read_and_the_reader_ends():
    left, right = socket.socketpair()
    closed = threading.Event()

    def items():
        try:
            yield b"first"
            while data := left.recv(100):  # blocks: the peer sends nothing more
                yield data
        finally:
            closed.set()

    relay = Relay(items(), abort=lambda: left.shutdown(socket.SHUT_RD))
    it = paced(relay, 5)
    assert next(it) == [b"first"]
    it.close()  # the client left while the reader sits in recv()
    assert relay.is_aborted
    # close() returned only once the reader had closed the upstream iterator.
    assert closed.is_set()
    left.close()
    right.close()


def test_a_slow_consumer_that_leaves_does_not_strand_the_reader():
    produced = []
    closed = threading.Event()

    def items():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    it = paced(iter(items()), 5)
    assert next(it)[0] == 0
    it.close()
    # The reader was blocked on the full buffer; it saw the consumer leave,
    # closed the items and ended before close() returned.
    assert closed.is_set()
    assert len(produced) < 10_000


def test_events_turn_pauses_into_keepalives_and_a_bug_into_one_error_event():
    from crabllm_sync import sse
    from crabllm_sync.views import openai_events

    gate = threading.Event()

    def chunks():
        yield {"n": 1}
        gate.wait(10)
        raise RuntimeError("a bug in a translator")

    out = []
    for event in openai_events(chunks(), keepalive=0.02):
        out.append(event)
        if out.count(sse.KEEPALIVE) == 2:
            gate.set()
    assert out[0] == b'data: {"n":1}\n\n'
    assert set(out[1:-1]) == {sse.KEEPALIVE}
    assert out[-1].startswith(b'data: {"error":{"message":"internal server error')
    assert sse.DONE not in out


# -- a deployment that cannot serve the request ------------------------------------


def refused(provider: str) -> UnsupportedError:
    return UnsupportedError(f"{provider}: parameter 'n' is not supported")


def test_a_refusal_moves_on_to_the_next_deployment_without_retry_or_breaker():
    clock = Clock()
    health = health_for(clock, threshold=1)
    fn = Script({"a": [refused("a")], "b": ["from b"]})
    result, used = call_with_retries(
        [dep("a", max_retries=5), dep("b")],
        fn,
        rng=random.Random(0),
        sleep=clock.sleep,
        health=health,
    )
    assert (result, used.provider) == ("from b", "b")
    assert fn.providers == ["a", "b"]  # refused once, not retried
    assert clock.now == 1000.0  # no backoff was slept
    # threshold=1: one counted failure would have opened the breaker.
    assert health.state(dep("a")).state != OPEN
    assert health.admit(dep("a")).allowed


def test_every_deployment_refusing_raises_the_first_refusal_as_a_400():
    fn = Script({"a": [refused("a")], "b": [refused("b")]})
    with pytest.raises(UnsupportedError) as exc:
        call_with_retries(
            [dep("a"), dep("b")], fn, rng=random.Random(0), sleep=lambda s: None
        )
    assert exc.value.http_status == 400
    assert exc.value.message == "a: parameter 'n' is not supported"
    assert fn.providers == ["a", "b"]


def test_a_refusal_then_failures_is_the_failures_answer():
    fn = Script({"a": [refused("a")], "b": [UpstreamTimeoutError("b: timed out")]})
    with pytest.raises(AllDeploymentsFailedError) as exc:
        call_with_retries(
            [dep("a"), dep("b", max_retries=0)],
            fn,
            rng=random.Random(0),
            sleep=lambda s: None,
        )
    assert exc.value.http_status == 504
    assert fn.providers == ["a", "b"]


def test_a_refused_probe_frees_the_probe():
    clock = Clock()
    health = health_for(clock, threshold=1, cooldown=10)
    a = dep("a")
    health.failed(a, health.admit(a))
    clock.sleep(10)
    fn = Script({"a": [refused("a")]})
    with pytest.raises(UnsupportedError):
        call_with_retries([a], fn, rng=random.Random(0), health=health)
    assert health.state(a).state == HALF_OPEN
    assert health.admit(a).is_probe
