"""Faults through a real gunicorn gevent server, each with a figure.

Upstreams that reset, hang, answer garbage or close mid-stream; a sqlite file
locked by another process or read-only; redis killed and restarted; a worker
SIGKILLed mid-stream. Each time the gateway answers an OpenAI-shaped error,
serves the next request without a restart, and after a graceful stop the
usage table holds exactly one row per request that reached an upstream.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import GunicornServer, write_toml
from tests.fakes import openai as fake
from tests.servers import RedisServer, Unavailable, wait_for
from tests.upstream import Reply, Upstream

KEY = "sk-faults-team-key-0001"
LIMITED = "sk-faults-limited-key-0002"  # has a rate limit: touches storage


class ResetServer:
    """Accepts, reads the request, answers with a TCP RST (SO_LINGER 0)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.count = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                if data:
                    with self._lock:
                        self.count += 1
            except OSError:
                pass
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()

    def stop(self) -> None:
        self.sock.close()


def _config(
    tmp_path: Path, up: Upstream, reset: ResetServer | None, storage: str
) -> Path:
    reset_provider = (
        f"""
[providers.reset]
kind = "openai"
base_url = "{reset.url}/v1"
api_key = "sk-up"
models = ["reset-model"]
max_retries = 0
timeout = 3  # the hang cases wait this; normal answers need far less
"""
        if reset
        else ""
    )
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
shutdown_timeout = 20

[storage]
{storage}

[providers.up]
kind = "openai"
base_url = "{up.url}/v1"
api_key = "sk-up"
models = ["gpt-4o"]
max_retries = 0
timeout = 3  # the hang cases wait this; normal answers need far less
{reset_provider}
[routing]
failure_threshold = 1000
keepalive_seconds = 0.5

[[keys]]
name = "team"
key = "{KEY}"

[[keys]]
name = "limited"
key = "{LIMITED}"
rate_limit = {{ requests_per_minute = 100000 }}

[extensions.usage]
flush_interval = 0.1
""",
    )


def _chat(base: str, key: str = KEY, model: str = "gpt-4o", stream: bool = False):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if stream:
        body["stream"] = True
    return httpx.post(
        f"{base}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def _is_openai_error(r: httpx.Response, *statuses: int) -> bool:
    """A non-stream error answer in the OpenAI shape, with one of `statuses`."""
    if r.status_code not in statuses:
        return False
    err = r.json().get("error")
    return isinstance(err, dict) and {"message", "type", "code"} <= err.keys()


def _stream_error(r: httpx.Response) -> dict | None:
    """The error event that ends a broken stream (None: no error event)."""
    import json

    for line in r.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            if "error" in event:
                return event["error"]
    return None


def _ok(base: str, key: str = KEY) -> bool:
    r = _chat(base, key)
    return r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


def _usage_rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT request_id, provider, status FROM usage ORDER BY id"
        ).fetchall()
    finally:
        con.close()


def _assert_one_row_per_upstream_request(
    db: Path, upstream_requests: int, refused: int = 0
) -> None:
    """One usage row per request that reached an upstream, plus one (status
    503) per request the gateway refused before calling one.

    (A failed request's row carries no provider name, so rows are counted,
    not matched by provider.)
    """
    rows = _usage_rows(db)
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "a request recorded twice"
    assert len(rows) == upstream_requests + refused, (
        len(rows),
        upstream_requests,
        refused,
        rows,
    )
    assert sum(1 for r in rows if r[2] == 503) >= refused


# -- upstream faults ------------------------------------------------------------


def test_upstream_faults_answer_errors_recover_and_lose_no_record(tmp_path):
    up = fake.make_upstream().start()
    reset = ResetServer()
    events = fake.stream_events("gpt-4o", ["a", "b", "c", "d"])
    srv = GunicornServer(
        _config(
            tmp_path,
            up,
            reset,
            'kind = "sqlite"\npath = "kv.db"\ndatabase = "sqlite:///usage.db"',
        ),
        workers=2,
    )
    try:
        hang = threading.Event()
        faults = [
            # (name, reply (None: reset server), stream, expected status)
            ("reset (RST) before the answer", None, False, 502),
            ("reset (RST), stream", None, True, 502),
            ("hangs: read timeout", Reply(hang=hang), False, 504),
            ("hangs: read timeout, stream", Reply(hang=hang), True, 504),
            (
                "non-JSON 200",
                Reply(body=b"<html>ok</html>", content_type="text/html"),
                False,
                502,
            ),
            (
                "truncated JSON",
                Reply(
                    body=b'{"id": "c", "choices": [{', content_type="application/json"
                ),
                False,
                502,
            ),
            (
                "JSON under a wrong content type",
                Reply(body=b"\x00\x01garbage", content_type="image/png"),
                False,
                502,
            ),
            (
                "closes before the body ends",
                Reply(
                    chunks=[b'{"id": "c", '],
                    drop_after=1,
                    content_type="application/json",
                ),
                False,
                502,
            ),
            ("closes mid-stream", Reply(events=events, drop_after=2), True, 200),
            ("hangs mid-stream", Reply(events=events, pauses={2: 8.0}), True, 200),
            (
                "garbage event mid-stream",
                Reply(events=[events[0], b"data: {\x00nope\n\n"]),
                True,
                200,
            ),
            (
                "JSON body to a stream request",
                Reply(json={"id": "x"}, content_type="application/json"),
                True,
                502,
            ),
        ]
        for name, reply, stream, status in faults:
            if reply is not None:
                up.enqueue(reply)
            r = _chat(
                srv.url, model="gpt-4o" if reply else "reset-model", stream=stream
            )
            if status == 200:
                assert r.status_code == 200, (name, r.text)
                err = _stream_error(r)
                assert err is not None and err.get("code"), (name, r.text)
                assert "data: [DONE]" not in r.text, name
            else:
                assert _is_openai_error(r, status), (name, r.status_code, r.text)
            assert _ok(srv.url), f"no recovery after {name}"
        hang.set()
    finally:
        srv.stop()
        up.stop()
        reset.stop()
    upstream_requests = len(up.requests) + reset.count
    assert upstream_requests == 2 * len(faults)
    _assert_one_row_per_upstream_request(tmp_path / "usage.db", upstream_requests)
    print(
        f"upstream faults: {len(faults)} injected, {upstream_requests} "
        "upstream requests, 0 records lost"
    )


# -- sqlite locked and read-only ------------------------------------------------


class Locker:
    """Another process holding BEGIN EXCLUSIVE on a sqlite file until released."""

    def __init__(self, path: Path) -> None:
        code = (
            "import sqlite3, sys\n"
            f"c = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=10)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n"
            "c.execute('ROLLBACK')\n"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == b"locked"

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


@pytest.mark.parametrize("which", ["kv", "usage"])
def test_sqlite_locked_by_another_process(tmp_path, which):
    up = fake.make_upstream().start()
    srv = GunicornServer(
        _config(
            tmp_path,
            up,
            None,
            'kind = "sqlite"\npath = "kv.db"\ndatabase = "sqlite:///usage.db"',
        ),
        workers=2,
    )
    try:
        assert _ok(srv.url, LIMITED)
        lock = Locker(tmp_path / f"{which}.db")
        answers, slowest = [], 0.0
        try:
            for _ in range(3):
                began = time.monotonic()
                r = _chat(srv.url, LIMITED)
                slowest = max(slowest, time.monotonic() - began)
                assert r.status_code == 200 or _is_openai_error(r, 503), r.text
                answers.append(r.status_code)
        finally:
            lock.release()
        if which == "kv":  # the rate limit cannot count: fails closed
            assert answers == [503] * 3
        else:  # usage rows wait in the buffer; keys are read from cache or WAL
            assert answers == [200] * 3
        wait_for(lambda: _ok(srv.url, LIMITED), timeout=20, what="recovery")
    finally:
        srv.stop()
        up.stop()
    _assert_one_row_per_upstream_request(
        tmp_path / "usage.db", len(up.requests), refused=answers.count(503)
    )
    print(
        f"sqlite {which} locked: {answers.count(503)} x 503, slowest "
        f"{slowest:.1f} s, "
        f"{len(up.requests)} upstream requests, 0 records lost"
    )


def _read_only(paths: list[Path]) -> None:
    """Make files read-only even for root (chattr +i); skip where impossible."""
    if os.geteuid() != 0:
        for p in paths:
            p.chmod(0o444)
        return
    if not shutil.which("chattr"):
        pytest.skip("running as root without chattr: cannot make a file read-only")
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i failed: {done.stderr.decode(errors='replace')}")


def _writable(paths: list[Path]) -> None:
    if os.geteuid() != 0:
        for p in paths:
            p.chmod(0o644)
    else:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


def test_sqlite_read_only_then_writable_again(tmp_path):
    """The files turn read-only and the workers restart (HUP) onto them: the
    rate-limited key is refused (503), usage waits in the buffer; once writable
    again everything is served and recorded."""
    up = fake.make_upstream().start()
    srv = GunicornServer(
        _config(
            tmp_path,
            up,
            None,
            'kind = "sqlite"\npath = "kv.db"\ndatabase = "sqlite:///usage.db"',
        ),
        workers=1,
    )
    files = [tmp_path / n for n in ("kv.db", "usage.db")]
    try:
        assert _ok(srv.url, LIMITED) and _ok(srv.url)
        # Written before the fault: the worker HUP replaces has nothing buffered
        # (rows buffered by a worker that exits while the file is read-only are
        # lost, and logged: see RELIABILITY.md).
        wait_for(lambda: len(_usage_rows(tmp_path / "usage.db")) == 2, what="flush")
        for name in ("kv.db", "usage.db"):
            con = sqlite3.connect(tmp_path / name)
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            con.close()
        files = [p for p in tmp_path.iterdir() if p.name.startswith(("kv.db", "usage"))]
        _read_only(files + [tmp_path])
        try:
            old = _worker_pids(srv)
            srv.proc.send_signal(signal.SIGHUP)
            wait_for(
                lambda: _worker_pids(srv) and not (_worker_pids(srv) & old),
                timeout=30,
                what="fresh workers",
            )
            answers = [_chat(srv.url, LIMITED) for _ in range(3)]
            plain = [_chat(srv.url) for _ in range(3)]
        finally:
            _writable(files + [tmp_path])
        # A fresh worker cannot write the config keys into a read-only keys
        # database: every request is a clean 503 until it is writable again.
        for r in answers + plain:
            assert r.status_code == 200 or _is_openai_error(r, 503), r.text
        wait_for(lambda: _ok(srv.url, LIMITED), timeout=20, what="recovery")
    finally:
        srv.stop()
        up.stop()
    refused = sum(1 for r in answers + plain if r.status_code == 503)
    # Those 503s come at authentication (keys not loaded), like a 401: no row.
    _assert_one_row_per_upstream_request(tmp_path / "usage.db", len(up.requests))
    print(
        f"sqlite read-only: {refused} of {len(answers + plain)} answered 503, "
        f"{len(up.requests)} upstream requests, 0 records lost"
    )


# -- redis killed and restarted -------------------------------------------------


def test_redis_killed_mid_run_and_restarted(tmp_path):
    try:
        redis = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    up = fake.make_upstream().start()
    srv = GunicornServer(
        _config(
            tmp_path,
            up,
            None,
            f'kind = "redis"\npath = "{redis.url}"\ndatabase = "sqlite:///usage.db"',
        ),
        workers=2,
    )
    try:
        assert all(_ok(srv.url, LIMITED) for _ in range(4))
        assert redis.proc is not None
        redis.proc.kill()  # SIGKILL: no goodbye
        redis.proc.wait(10)
        down = [_chat(srv.url, LIMITED) for _ in range(4)]
        plain = [_chat(srv.url) for _ in range(2)]
        redis.start()
        wait_for(lambda: _ok(srv.url, LIMITED), timeout=30, what="recovery")
        after = [_chat(srv.url, LIMITED) for _ in range(4)]
    finally:
        srv.stop()
        up.stop()
        redis.stop()
    assert all(_is_openai_error(r, 503) for r in down), [r.text for r in down]
    assert [r.status_code for r in plain] == [200, 200]  # no limit: no redis needed
    assert [r.status_code for r in after] == [200] * 4
    _assert_one_row_per_upstream_request(
        tmp_path / "usage.db", len(up.requests), refused=len(down)
    )
    print(
        f"redis killed: {len(down)} x 503 while down, recovered, "
        f"{len(up.requests)} upstream requests, 0 records lost"
    )


# -- a worker SIGKILLed mid-stream ------------------------------------------------


def _worker_pids(srv: GunicornServer) -> set[int]:
    """The gunicorn master's children (its workers), from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == srv.proc.pid:
            pids.add(int(entry.name))
    return pids


def test_worker_sigkilled_mid_stream(tmp_path):
    up = fake.make_upstream().start()
    srv = GunicornServer(
        _config(
            tmp_path,
            up,
            None,
            'kind = "sqlite"\npath = "kv.db"\ndatabase = "sqlite:///usage.db"',
        ),
        workers=1,
    )
    db = tmp_path / "usage.db"
    try:
        done = [_ok(srv.url) for _ in range(5)]
        # Every finished request is on disk before the kill (flush_interval).
        wait_for(lambda: len(_usage_rows(db)) == 5, timeout=20, what="flush")
        (worker,) = _worker_pids(srv)
        events = fake.stream_events("gpt-4o", ["a", "b", "c"])
        up.enqueue(Reply(events=events, pauses={2: 30.0}))
        got: dict = {}

        def stream() -> None:
            try:
                with httpx.stream(
                    "POST",
                    f"{srv.url}/v1/chat/completions",
                    json={
                        "model": "gpt-4o",
                        "stream": True,
                        "messages": [{"role": "user", "content": "x"}],
                    },
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=30,
                ) as r:
                    got["status"] = r.status_code
                    got["body"] = b"".join(r.iter_bytes())
            except httpx.HTTPError as exc:
                got["error"] = exc

        t = threading.Thread(target=stream)
        t.start()
        up.wait_until(lambda u: u.streams_open == 1, timeout=20)
        os.kill(worker, signal.SIGKILL)
        t.join(30)
        assert not t.is_alive()
        # The client sees a closed stream (no [DONE]) or a transport error.
        if "error" not in got:
            assert got["status"] == 200 and b"[DONE]" not in got["body"]
        wait_for(
            lambda: len(_worker_pids(srv) - {worker}) == 1,
            timeout=30,
            what="a replacement worker",
        )
        wait_for(lambda: _ok(srv.url), timeout=30, what="answers after the kill")
        done += [_ok(srv.url) for _ in range(3)]
    finally:
        srv.stop()
        up.stop()
    assert all(done)
    rows = _usage_rows(db)
    # The stream in flight in the killed worker reached the upstream but has no
    # record: a SIGKILL loses what the worker had not written (see RELIABILITY.md).
    assert len(up.requests) == len(rows) + 1
    assert len({r[0] for r in rows}) == len(rows)
    print(
        f"worker SIGKILL mid-stream: 1 stream cut cleanly, {len(rows)} records of "
        f"{len(up.requests)} upstream requests (lost: the 1 in flight)"
    )
