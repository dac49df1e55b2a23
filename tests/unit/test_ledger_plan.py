"""ledger/plan.py: a period cut into raw minutes, whole hours and whole days."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from crabllm_sync.ledger.plan import (
    DAY,
    HOUR,
    Part,
    first_of_each,
    floor_to,
    increments,
    split,
)
from tests.fuzzing import examples

BASE = 1_760_000_400  # not on a day boundary: days and hours both cut
times = st.one_of(
    st.floats(BASE - 5 * DAY, BASE + 5 * DAY, allow_nan=False),
    st.integers(-120, 120).map(lambda h: BASE - BASE % HOUR + h * HOUR),
    st.integers(-5, 5).map(lambda d: BASE - BASE % DAY + d * DAY),
)
bounds = st.one_of(st.none(), times)


def _covers(parts: list[Part], ts: float) -> list[Part]:
    def inside(p: Part) -> bool:
        value = ts if p.span == 0 else floor_to(ts, p.span)
        return (p.lo is None or value >= p.lo) and (p.hi is None or value < p.hi)

    return [p for p in parts if inside(p)]


@settings(max_examples=examples(500))
@given(since=bounds, until=bounds, probe=times)
def test_every_time_is_counted_once_exactly_when_inside_the_period(since, until, probe):
    parts = split(since, until)
    wanted = (since is None or probe >= since) and (until is None or probe < until)
    assert len(_covers(parts, probe)) == (1 if wanted else 0)
    for p in parts:
        if p.span:  # rollup parts are whole buckets
            assert p.lo is None or p.lo % p.span == 0
            assert p.hi is None or p.hi % p.span == 0


def test_shapes():
    h0 = BASE - BASE % DAY  # midnight
    assert split(h0, h0 + DAY) == [Part(DAY, h0, h0 + DAY)]
    assert split(h0 + 10, h0 + 20) == [Part(0, h0 + 10, h0 + 20)]
    assert split(h0 + 10, h0 + 2 * HOUR + 5) == [
        Part(0, h0 + 10, h0 + HOUR),
        Part(HOUR, h0 + HOUR, h0 + 2 * HOUR),
        Part(0, h0 + 2 * HOUR, h0 + 2 * HOUR + 5),
    ]
    assert split(None, None) == [Part(DAY, None, None)]
    assert split(h0 + 1, None) == [
        Part(0, h0 + 1, h0 + HOUR),
        Part(HOUR, h0 + HOUR, h0 + DAY),
        Part(DAY, h0 + DAY, None),
    ]
    for empty in (
        (5, 5),
        (6, 5),
        (math.nan, None),
        (None, -math.inf),
        (math.inf, None),
    ):
        assert split(*empty) == []
    assert split(-math.inf, math.inf) == [Part(DAY, None, None)]


def test_increments_sum_by_span_bucket_key_and_model():
    rows = [
        {
            "request_id": "a",
            "ts": HOUR + 1.5,
            "key_name": None,
            "model": "m",
            "images": 2,
        },
        {"request_id": "b", "ts": 2 * HOUR - 0.001, "key_name": None, "model": "m"},
        {
            "request_id": "c",
            "ts": 2 * HOUR,
            "key_name": "k",
            "model": "m",
            "cost_nanos": 7,
        },
    ]
    got = increments(rows)
    assert got[(HOUR, HOUR, "", "m")][:1] == [2]
    assert got[(HOUR, 2 * HOUR, "k", "m")][0] == 1
    assert got[(DAY, 0, "", "m")][0] == 2
    assert got[(DAY, 0, "k", "m")][6] == 7  # requests, then the sums in order
    assert first_of_each([rows[0], rows[0], rows[1]], {"a"}) == [rows[0]]
