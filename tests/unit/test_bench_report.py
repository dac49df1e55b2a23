"""bench/report.py: the frontier, saturation and the RESULTS.md table, from made-up
steps (the benchmark itself is never run by the tests)."""

from __future__ import annotations

from typing import Any

from bench import report


def _step(
    target: str,
    rate: float,
    p50: float,
    p99: float,
    success: float = 1.0,
    achieved: float | None = None,
) -> dict[str, Any]:
    lat = {"p50": p50, "p90": p99, "p99": p99, "p99.9": p99, "max": p99, "mean": p50}
    return {
        "target": target,
        "workload": "chat-minimal",
        "rate": rate,
        "burst": None,
        "sent": 100,
        "ok": int(100 * success),
        "success": success,
        "achieved_rps": rate if achieved is None else achieved,
        "latency": lat,
        "ttfb": lat,
        "gap": {},
        "lag": {"p99": 0.5},
        "cpu_ms_per_req": 2.0 if target != "direct" else 0.0,
        "mock_cpu_ms_per_req": 0.1,
        "loadgen_cpu_ms_per_req": 0.2,
    }


STEPS = [
    _step("direct", 100, 0.8, 2.0),
    _step("direct", 500, 0.9, 4.0),
    _step("direct", 1000, 1.0, 8.0),
    _step("gateway", 100, 2.0, 4.0),
    _step("gateway", 500, 2.5, 9.0),
    _step("gateway", 1000, 40.0, 300.0, achieved=700),
    _step("bare", 100, 2.0, 6.0),
    _step("bare", 500, 3.0, 30.0, success=0.99),
]


def test_frontier_is_the_highest_rate_with_every_lower_one_under_the_limit():
    assert report.frontier(STEPS, "direct", 5) == 500
    assert report.frontier(STEPS, "direct", 10) == 1000
    assert report.frontier(STEPS, "gateway", 5) == 100
    assert report.frontier(STEPS, "gateway", 10) == 500
    assert report.frontier(STEPS, "gateway", 50) == 500
    # a failed request stops the frontier even when P99 is fine
    assert report.frontier(STEPS, "bare", 50) == 100


def test_saturation_is_the_first_rate_that_fell_behind():
    assert report.saturation_rate(STEPS, "direct") is None
    assert report.saturation_rate(STEPS, "gateway") == 1000
    assert report.saturation_rate(STEPS, "bare") == 500


META = {
    "commit": "abc123",
    "machine": "2 x test CPU",
    "loadavg_before": (0.1, 0.2, 0.3),
    "loadavg_after": (1.0, 1.1, 1.2),
    "mode": "quick",
    "duration": 2.0,
    "started": "t0",
    "finished": "t1",
    "config": "auth on (1 key), storage memory, usage extension off",
    "peak_rss_kb": {"gateway": 150 * 1024, "bare": 120 * 1024},
    "idle_rss_kb": {"gateway": 130 * 1024, "bare": 100 * 1024},
    "hwm_kb": {"gateway": 151 * 1024, "bare": 121 * 1024},
}


def test_markdown_reports_added_latency_against_direct_and_marks_targets():
    text = report.markdown({"meta": META, "steps": STEPS})
    assert "`abc123`" in text
    # gateway at 100 RPS: 2.0 - 0.8 added at P50, 4.0 - 2.0 at P99
    assert "| chat-minimal | 100 | 0.80 / 2.00 | 2.00 / 4.00 | 1.20 / 2.00 |" in text
    assert "| chat-minimal saturates at | not below 800 RPS | 1000 RPS |" in text
    assert (
        "| peak RSS of the gunicorn tree | <= 160 MB | 150 MB | 120 MB | yes |" in text
    )
    assert "| gateway | 100 | 500 | 500 | 1000 RPS |" in text


def test_markdown_shows_each_profile_or_why_it_is_missing(tmp_path):
    from pathlib import Path

    from bench import procs, profile

    # py-spy's raw format: one collapsed stack and its sample count per line.
    ours = f"chat ({procs.ROOT}/crabllm_sync/views/openai.py:9)"
    raw = tmp_path / "worker-1.txt"
    raw.write_text(
        f"run (gevent/hub.py:1);{ours};send (gevent/_socketcommon.py:3) 30\n"
        f"run (gevent/hub.py:1);{ours} 10\n"
        "acquire_with_timeout (gevent/thread.py:2) 500\n"  # idle: left out
    )
    summary = profile.summary([Path(raw)])
    assert summary["samples"] == 40
    assert summary["self"][0] == ["send (gevent/_socketcommon.py)", 0.75]
    assert summary["own"] == [["chat (crabllm_sync/views/openai.py)", 1.0]]
    made = {"workload": "chat-minimal", "rate": 400.0, "duration": 10.0, "ok": 1.0}
    missing = {"workload": "chat-stream", "rate": 400.0, "error": "py-spy not found"}
    text = report.markdown(
        {"meta": META, "steps": STEPS, "profiles": [{**made, **summary}, missing]}
    )
    assert "### chat-minimal at 400 RPS (10 s, 40 samples, ok 100.00%)" in text
    assert (
        "| `send (gevent/_socketcommon.py)` | 75.0% | | "
        "`chat (crabllm_sync/views/openai.py)` | 100.0% |" in text
    )
    assert "### chat-stream at 400 RPS\n\nNot made: py-spy not found" in text
