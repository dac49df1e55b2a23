"""streams.paced() under gevent (as in gunicorn's gevent worker): items are
read on a greenlet the request switches to directly and handed back in
batches, keep-alives fill pauses, and a consumer that leaves closes the
upstream. Each case runs in a gevent subprocess (gevent_streams_cases.py);
the test process has no gevent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import crabllm_sync

ROOT = Path(crabllm_sync.__file__).resolve().parent.parent


def run_case(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.gevent_streams_cases", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_items_reach_the_consumer_without_a_trip_through_the_hub():
    # A queue hand-over wakes the consumer through gevent's run queue once a
    # chunk (bench/README.md change 14); the inline reader switches to it
    # directly. Each item here arrives alone, so it must also leave at once
    # (held back for a batch, the next would never be sent).
    report = run_case("flow")
    assert report["items"] == 50
    assert report["woken_by_hub"] == 0


def test_items_that_arrive_together_leave_in_one_batch_under_gevent():
    # One network read of 20 chunks and the end: one batch, one client write.
    report = run_case("together")
    assert report["batches"] == [[[f"x{i}" for i in range(20)], True]]
    assert report["woken_by_hub"] == 0


def test_items_that_arrive_while_the_consumer_is_away_are_not_lost():
    report = run_case("away")
    assert report["items"] == [f"x{i}" for i in range(20)]
    assert report["last_empty"]


def test_keepalives_fill_an_upstream_pause_under_gevent():
    report = run_case("pause")
    assert report["pauses"] >= 2
    assert report["items"] == ["a", "b", "c"]
    assert report["end"] == "last"


def test_leaving_during_a_pause_aborts_and_closes_the_upstream_under_gevent():
    report = run_case("leave", "pause")
    assert report["seen"] == ["a", "b", "c", "pause"]
    assert report["aborted"]
    assert report["closed"]


def test_leaving_between_items_closes_the_upstream_under_gevent():
    report = run_case("leave", "item")
    # Items that arrive together leave in one batch: the first batch starts
    # with "a", and leaving after it closes the upstream.
    assert report["seen"][:1] == ["a"]
    assert report["closed"]


def test_leaving_an_upstream_that_cannot_be_cut_stops_at_its_next_item():
    report = run_case("leave_unabortable")
    assert report["closed"]
    # At the next item (sent 50 ms later), not after the 2 s join timeout.
    assert report["seconds"] < 1.5


def test_a_stream_closed_from_another_greenlet_still_cuts_the_upstream():
    assert run_case("leave_elsewhere") == {"aborted": True}


def test_an_upstream_failure_is_raised_after_the_items_under_gevent():
    report = run_case("error")
    assert report == {"items": ["a"], "error": "upstream failed", "closed": True}
