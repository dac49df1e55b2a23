"""Graceful shutdown: SIGTERM finishes in-flight streams within shutdown_timeout
and flushes the buffered usage records, through a real gunicorn gevent server."""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import time
from pathlib import Path

import httpx

from tests.conftest import GunicornServer, write_toml
from tests.fakes import openai as fake
from tests.upstream import Reply, Upstream

KEY = "sk-shutdown-team-key-01"
WORDS = [f"w{i}" for i in range(8)]


def shutdown_config(tmp_path: Path, up: Upstream, shutdown_timeout: int) -> Path:
    # flush_interval is long: rows reach the table only through the flush at
    # worker exit, which is what is under test.
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
shutdown_timeout = {shutdown_timeout}

[storage]
kind = "sqlite"
path = "crabllm.db"

[providers.up]
kind = "openai"
base_url = "{up.url}/v1"
api_key = "sk-up"
models = ["gpt-4o"]
max_retries = 0
timeout = 60

[[keys]]
name = "team"
key = "{KEY}"

[extensions.usage]
flush_interval = 3600
""",
    )


def _stream(base: str) -> tuple[int, str, bool]:
    """(status, the streamed text, ended with [DONE])."""
    import json

    text, done = [], False
    with httpx.stream(
        "POST",
        f"{base}/v1/chat/completions",
        json={
            "model": "gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "x"}],
        },
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ) as r:
        try:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    event = json.loads(line[6:])
                    for choice in event.get("choices", []):
                        text.append(choice.get("delta", {}).get("content") or "")
        except httpx.HTTPError:
            pass
        return r.status_code, "".join(text), done


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT request_id, status, stream FROM usage").fetchall()
    finally:
        con.close()


def test_sigterm_finishes_in_flight_streams_and_flushes_usage(tmp_path):
    n = 6
    up = fake.make_upstream().start()
    events = fake.stream_events("gpt-4o", WORDS)
    for _ in range(n):  # each stream takes ~2 s: still running at SIGTERM
        up.enqueue(Reply(events=events, chunk_delay=0.25))
    srv = GunicornServer(shutdown_config(tmp_path, up, shutdown_timeout=20), workers=2)
    try:
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(_stream, srv.url) for _ in range(n)]
            up.wait_until(lambda u: u.streams_open == n, timeout=30)
            began = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            results = [f.result(timeout=60) for f in futures]
        srv.proc.wait(30)
        took = time.monotonic() - began
    finally:
        srv.stop()
        up.stop()
    assert results == [(200, "".join(WORDS), True)] * n
    assert srv.proc.returncode == 0, srv.log()
    assert took < 20  # within shutdown_timeout
    rows = _rows(tmp_path / "crabllm.db")
    assert len(rows) == n == len(up.requests)
    assert all(status == 200 and stream for _, status, stream in rows)
    print(
        f"shutdown: {n} streams in flight at SIGTERM, {n} finished, {len(rows)} "
        f"records flushed, stopped in {took:.1f} s (timeout 20 s)"
    )


def test_stream_longer_than_shutdown_timeout_is_cut_and_server_exits(tmp_path):
    up = fake.make_upstream().start()
    events = fake.stream_events("gpt-4o", WORDS)
    srv = GunicornServer(shutdown_config(tmp_path, up, shutdown_timeout=2), workers=1)
    try:
        ok = httpx.post(
            f"{srv.url}/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        assert ok.status_code == 200
        up.enqueue(Reply(events=events, pauses={2: 60.0}))  # never ends in time
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            future = pool.submit(_stream, srv.url)
            up.wait_until(lambda u: u.streams_open == 1, timeout=30)
            began = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            status, _, done = future.result(timeout=60)
        srv.proc.wait(30)
        took = time.monotonic() - began
    finally:
        srv.stop()
        up.stop()
    assert status == 200 and not done  # cut: no [DONE], never a hang
    assert took < 2 + 10  # the timeout, plus gunicorn's kill and exit
    rows = _rows(tmp_path / "crabllm.db")
    # The worker cuts the stream itself at shutdown_timeout and exits before the
    # master's SIGKILL: the finished request's buffered row and the cut
    # stream's own row are both flushed.
    assert len(rows) == len(up.requests) == 2, rows
    assert any(status == 200 and not stream for _, status, stream in rows), rows
    print(
        f"shutdown past timeout: stream cut, exit in {took:.1f} s, "
        f"{len(rows)} of {len(up.requests)} requests recorded"
    )
