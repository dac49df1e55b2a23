"""PostgreSQL restarted under a gunicorn gateway that keeps keys and usage in it.

Requests flow through 2 gevent workers (4 clients) while the server is
stopped (`pg_ctl -m fast`: every connection cut) and started again on its
port. Bound: a key verified before the outage is trusted 2 s (the key cache)
+ 3 s (STALE_IF_ERROR, while the store is unreachable), so an outage under 3 s
loses no request, and past that a request answers 503 only while the server
is down. Usage rows are buffered through the outage and written when it is
back: after the gateway's stop every 200 has exactly one row.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import httpx
import psycopg2

from crabllm_sync.auth import STALE_IF_ERROR
from tests.conftest import GunicornServer, write_toml
from tests.fakes import openai as fake
from tests.servers import PostgresServer, wait_for

KEY = "sk-pg-restart-team-key-01"
CLIENTS = 4
BEFORE = 20  # answers before the restart
AFTER = 40  # answers begun after the server is back
DURING = 20  # answers begun while the server is down
OUTAGE = 2.2  # seconds down at least: past the 2 s key cache
MAX_ANSWERS = 2000
_names = itertools.count()


def _config(tmp_path: Path, upstream_url: str, database: str) -> Path:
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
[storage]
kind = "sqlite"
path = "kv.db"
database = "{database}"
connect_timeout = 1

[providers.up]
kind = "openai"
base_url = "{upstream_url}/v1"
api_key = "sk-up"
models = ["gpt-4o"]
max_retries = 0
timeout = 5

[[keys]]
name = "team"
key = "{KEY}"

[extensions.usage]
flush_interval = 0.1
""",
    )


def _chat(base: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )


def _usage_rows(postgres: PostgresServer, name: str) -> list[tuple[int, str]]:
    conn = psycopg2.connect(
        host="127.0.0.1", port=postgres.port, user="gw", dbname=name
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status, request_id FROM usage")
            return cur.fetchall()
    finally:
        conn.close()


def test_postgres_restarted_mid_run(tmp_path, postgres):
    name = f"restart{next(_names)}"
    database = postgres.create_database(name)
    up = fake.make_upstream().start()
    srv = GunicornServer(_config(tmp_path, up.url, database), workers=2)
    answers: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def count(since: float = 0.0) -> int:
        with lock:
            return sum(1 for a in answers if a[0] >= since)

    def client() -> None:
        while not stop.is_set() and count() < MAX_ANSWERS:
            began = time.monotonic()
            status = _chat(srv.url).status_code
            with lock:
                answers.append((began, time.monotonic(), status))

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: count() >= BEFORE, what="answers before the restart")
        down_at = time.monotonic()
        postgres.stop()  # fast: every connection is cut
        # Down past the workers' key cache, with requests arriving meanwhile.
        wait_for(
            lambda: (
                count(since=down_at) >= DURING and time.monotonic() - down_at >= OUTAGE
            ),
            what="requests during the outage",
        )
        postgres.start()
        back_at = time.monotonic()
        wait_for(lambda: count(since=back_at) >= AFTER, what="answers after it")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        srv.stop()  # the last usage rows are written at worker exit
        up.stop()
    statuses = [a[2] for a in sorted(answers)]
    ok = statuses.count(200)
    refused = [a for a in answers if a[2] != 200]
    rows = _usage_rows(postgres, name)
    print(
        f"postgres restart ({back_at - down_at:.2f} s down): {len(answers)} answers, "
        f"{len(refused)} x 503, {len(up.requests)} upstream requests, "
        f"{len(rows)} usage rows"
    )
    assert srv.proc.returncode == 0
    assert set(statuses) <= {200, 503}, statuses
    # A key looked up before the outage is trusted STALE_IF_ERROR past its
    # cache while the server is down: no 503 for an outage shorter than that.
    # (Before: every lookup past the 2 s cache was a 503, 62 of 176 answers.)
    if back_at - down_at < STALE_IF_ERROR:
        assert not refused, refused
    # A 503 only while the server was down (its key lookup found no server).
    assert all(a[1] >= down_at and a[0] <= back_at for a in refused), refused
    assert [a[2] for a in answers if a[0] >= back_at].count(503) == 0
    # Every request that reached the upstream has its row, written once.
    assert len({r[1] for r in rows}) == len(rows)
    assert sum(1 for r in rows if r[0] == 200) == ok == len(up.requests)
