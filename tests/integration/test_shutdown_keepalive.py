"""SIGTERM with keep-alive client connections open, through real gunicorn:
idle ones are closed at once, one in flight is answered with
`Connection: close`, and the server exits without waiting out the timeout."""

from __future__ import annotations

import concurrent.futures
import http.client
import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

from tests.conftest import GunicornServer
from tests.fakes import openai as fake
from tests.integration.test_shutdown import KEY, shutdown_config
from tests.upstream import Reply

# Far longer than the test waits: an exit before it is not a timeout's.
SHUTDOWN_TIMEOUT = 120


def _chat(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """One chat on a kept-alive connection (HTTP/1.1, no Connection header)."""
    conn.request(
        "POST",
        "/v1/chat/completions",
        body=json.dumps(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        ),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    return response


def _closed_by_server(conn: http.client.HTTPConnection) -> bool:
    """True once the server closed the connection (EOF); False on a timeout."""
    assert conn.sock is not None
    try:
        return conn.sock.recv(1) == b""
    except TimeoutError:
        return False


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT status FROM usage").fetchall()
    finally:
        con.close()


def test_sigterm_closes_idle_keepalive_connections_and_exits_at_once(tmp_path):
    up = fake.make_upstream().start()
    srv = GunicornServer(
        shutdown_config(tmp_path, up, shutdown_timeout=SHUTDOWN_TIMEOUT), workers=1
    )
    host, port = "127.0.0.1", srv.port
    idle = http.client.HTTPConnection(host, port, timeout=30)
    busy = http.client.HTTPConnection(host, port, timeout=30)
    release = threading.Event()
    try:
        first = _chat(idle)  # answered; the connection stays open, idle
        assert first.status == 200
        assert first.getheader("Connection") != "close"
        up.enqueue(Reply(json=fake.completion("gpt-4o", "late"), hang=release))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(_chat, busy)
            up.wait_for_requests(2)  # the second request waits on the upstream
            began = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            # Before: the idle connection stayed open until the worker was
            # killed at the graceful timeout (this read timed out).
            idle_closed = _closed_by_server(idle)
            release.set()
            late = in_flight.result(timeout=30)
        srv.proc.wait(30)  # before: shutdown_timeout (120 s), then a kill
        took = time.monotonic() - began
    finally:
        release.set()
        idle.close()
        busy.close()
        srv.stop()
        up.stop()
    assert idle_closed
    assert late.status == 200
    assert late.getheader("Connection") == "close"
    assert srv.proc.returncode == 0, srv.log()
    assert _rows(tmp_path / "crabllm.db") == [(200,), (200,)]  # flushed at exit
    print(f"shutdown with an idle keep-alive open: exit in {took:.1f} s")
