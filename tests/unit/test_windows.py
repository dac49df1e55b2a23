"""Rate-limit windows and budget periods with a fake clock (pure parts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crabllm_sync.extensions.budget import period_of, reservation, usd_to_nanos
from crabllm_sync.extensions.rate_limit import Window, duration, window_index
from crabllm_sync.pricing import Price


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_window_index_and_elapsed():
    assert window_index(120.0) == (2, 0.0)
    assert window_index(179.5) == (2, 59.5)


def test_weighted_count_slides_the_previous_window_out():
    assert Window(prev=60, curr=0, elapsed=0).count == 60
    assert Window(prev=60, curr=0, elapsed=30).count == 30
    assert Window(prev=60, curr=10, elapsed=45).count == 25


def test_error_is_bounded_by_the_previous_window():
    # Requests evenly spread: the estimate is the true sliding count.
    w = Window(prev=60, curr=30, elapsed=30)
    true_count = 30 + 30  # last 30 s of the previous window + this one
    assert w.count == true_count


def test_seconds_until_within_this_window():
    w = Window(prev=10, curr=0, elapsed=0)
    # 10 * (1 - e/60) <= 4  ->  e >= 36
    assert w.seconds_until(4) == pytest.approx(36)
    assert Window(prev=10, curr=0, elapsed=40).seconds_until(4) == 0


def test_seconds_until_needs_the_next_window():
    w = Window(prev=0, curr=5, elapsed=50)
    # 10 s to the window end, then 5 * (1 - e/60) <= 4 -> e >= 12
    assert w.seconds_until(4) == pytest.approx(22)
    assert w.seconds_until_empty() == pytest.approx(70)
    assert Window(prev=3, curr=0, elapsed=20).seconds_until_empty() == 40
    assert Window(prev=0, curr=0, elapsed=20).seconds_until_empty() == 0


@pytest.mark.parametrize(
    "seconds,text",
    [
        (0.02, "20ms"),
        (0, "0ms"),
        (6, "6s"),
        (13.374, "13.374s"),
        (90, "1m30s"),
        (120, "2m0s"),
        (61.5, "1m1.5s"),
    ],
)
def test_duration_is_openai_style(seconds, text):
    assert duration(seconds) == text


def test_daily_period():
    p = period_of(ts(2026, 11, 26, 23, 59, 59), "daily")
    assert p.id == "2026-11-26"
    assert p.start == ts(2026, 11, 26) and p.end == ts(2026, 11, 27)
    assert period_of(ts(2026, 11, 27), "daily").id == "2026-11-27"


def test_weekly_period_starts_monday_iso_week():
    p = period_of(ts(2026, 11, 26, 12), "weekly")  # a Thursday
    assert p.start == ts(2026, 11, 23) and p.end == ts(2026, 11, 30)
    assert p.id == "2026-W48"
    # Across a year end: 2027-01-01 is a Friday in ISO week 53 of 2026.
    q = period_of(ts(2027, 1, 1), "weekly")
    assert q.start == ts(2026, 12, 28) and q.id == "2026-W53"


def test_monthly_period_including_december():
    p = period_of(ts(2026, 12, 31, 23), "monthly")
    assert p.id == "2026-12"
    assert p.start == ts(2026, 12, 1) and p.end == ts(2027, 1, 1)
    assert period_of(ts(2027, 1, 1), "monthly").id == "2027-01"
    assert period_of(ts(2024, 2, 29), "monthly").end == ts(2024, 3, 1)


def test_never_period():
    p = period_of(ts(2026, 1, 1), "never")
    assert p.id == "all" and p.start is None and p.end is None


def test_unknown_period_is_an_error():
    with pytest.raises(ValueError):
        period_of(0, "hourly")


def test_reservation_uses_the_output_cap():
    price = Price(input=1.0, output=10.0)  # 1000 and 10000 nanos per token
    body = {"messages": [{"role": "user", "content": "x" * 8}], "max_tokens": 5}
    assert reservation(body, "chat", price) == 2 * 1000 + 5 * 10_000
    body2 = {"messages": [], "max_completion_tokens": 1}
    assert reservation(body2, "chat", price) == 10_000
    default = reservation({"messages": []}, "chat", price)
    assert default == 256 * 10_000
    assert reservation({"input": "abcd"}, "embeddings", price) == 1000


def test_usd_to_nanos_is_exact():
    assert usd_to_nanos(0.1) == 100_000_000
    assert usd_to_nanos(50.0) == 50_000_000_000


def test_reservation_of_a_native_responses_body_counts_its_items_and_cap():
    price = Price(input=1.0, output=10.0)  # 1000 and 10000 nanos per token
    body = {
        "instructions": "x" * 4,
        "input": [
            {"role": "user", "content": "x" * 8},
            {"role": "user", "content": [{"type": "input_text", "text": "x" * 4}]},
        ],
        "max_output_tokens": 5,
    }
    assert reservation(body, "responses", price) == 4 * 1000 + 5 * 10_000
