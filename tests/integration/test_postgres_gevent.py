"""PostgreSQL under a real gunicorn gevent worker: a slow or blocked query
holds only its own request, never the worker, and statements are bounded."""

from __future__ import annotations

import concurrent.futures
import itertools
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg2
import pytest
from psycopg2.extensions import connection as Connection

from tests.conftest import ROOT, GunicornServer, write_toml
from tests.servers import PostgresServer, wait_for

_names = itertools.count()


def _config(tmp_path: Path, database: str, extra: str = "") -> Path:
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
[storage]
kind = "memory"
database = "{database}"
{extra}

[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key = "sk-up"
models = ["gpt-4o"]

[[keys]]
name = "team"
key = "sk-gevent-team-key-01"
""",
    )


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.create_database(f"gevent{next(_names)}")


@pytest.fixture
def locker(
    postgres: PostgresServer, database: str
) -> Iterator[psycopg2.extensions.connection]:
    """A second connection, from the test, to hold locks the gateway waits on."""
    name = database.rsplit("/", 1)[1]
    conn = psycopg2.connect(
        host="127.0.0.1", port=postgres.port, user="gw", dbname=name
    )
    yield conn
    conn.close()


def _lock_keys(conn: Connection) -> None:
    """Take api_keys exclusively (until rollback): every key lookup waits."""
    with conn.cursor() as cur:
        cur.execute("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")


def _waiting_on_lock(conn: Connection) -> int:
    """How many other sessions wait on a lock (the gateway's key lookup)."""
    with conn.cursor() as cur:
        # pg_stat_activity is read once per transaction unless cleared.
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cur.fetchone()[0]


def _chat(base: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def test_a_query_blocked_on_a_lock_does_not_stall_other_requests_of_the_worker(
    tmp_path, database, locker
):
    srv = GunicornServer(_config(tmp_path, database), workers=1)
    try:
        _lock_keys(locker)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # An unknown key is looked up in api_keys: that query now waits.
            slow = pool.submit(_chat, srv.url, "sk-unknown-key-0001")
            wait_for(lambda: _waiting_on_lock(locker) == 1, what="a blocked lookup")
            # The same (only) worker answers while its other request is blocked.
            # Before: the whole worker sat in libpq and this timed out.
            health = httpx.get(f"{srv.url}/health", timeout=5)
            still_blocked = not slow.done() and _waiting_on_lock(locker) == 1
            locker.rollback()
            answer = slow.result(timeout=30)
    finally:
        locker.rollback()
        srv.stop()
    assert health.status_code == 200
    assert still_blocked
    assert answer.status_code == 401, answer.text
    assert srv.proc.returncode == 0, srv.log()


def test_a_statement_waiting_past_statement_timeout_is_a_503(
    tmp_path, database, locker
):
    config = _config(tmp_path, database, "statement_timeout = 1")
    srv = GunicornServer(config, workers=1)
    try:
        _lock_keys(locker)  # held until the answer is in: only the limit ends it
        # Before: no statement_timeout, the lookup waited for the lock forever.
        answer = _chat(srv.url, "sk-unknown-key-0002")
        waiting = _waiting_on_lock(locker)
    finally:
        locker.rollback()
        srv.stop()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "service_unavailable"
    assert waiting == 0


def test_a_connect_to_a_server_that_never_answers_is_bounded_under_gevent():
    """libpq ignores connect_timeout in the non-blocking mode gevent needs:
    a server that accepts TCP but never speaks held the connect for ever."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nothing answers
    port = silent.getsockname()[1]
    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import peewee\n"
        "from crabllm_sync.db import Database\n"
        "from crabllm_sync.storage.postgres import PostgresLimits\n"
        f"url = 'postgresql://gw@127.0.0.1:{port}/x'\n"
        "db = Database(url, PostgresLimits(connect_timeout=1))\n"
        "try:\n"
        "    db.db.connect()\n"
        "except peewee.OperationalError as exc:\n"
        "    print('refused:', exc)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    finally:
        silent.close()
    assert done.stdout.strip() == "refused: connection timed out after 1 s", (
        done.stdout + done.stderr
    )
