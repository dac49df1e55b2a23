"""streams.paced() under gevent (as in gunicorn's gevent worker): items are
read by a reader greenlet, keep-alives fill pauses, and a consumer that
leaves closes the upstream. Each case runs in a gevent
subprocess (gevent_streams_cases.py); the test process has no gevent."""

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


def test_a_stream_closed_from_another_greenlet_still_cuts_the_upstream():
    assert run_case("leave_elsewhere") == {"aborted": True}


def test_an_upstream_failure_is_raised_after_the_items_under_gevent():
    report = run_case("error")
    assert report == {"items": ["a"], "error": "upstream failed", "closed": True}
