"""A real nginx with deploy/nginx.conf before gunicorn: streams pass event by event."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port, write_toml
from tests.fakes import openai as fake
from tests.upstream import Reply, sse_bytes

NGINX = shutil.which("nginx") or (
    "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


def _nginx(tmp_path: Path, gateway_port: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    site = site.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{gateway_port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    (tmp_path / "site.conf").write_text(site)
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / d).mkdir()
    (tmp_path / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
{"user root;" if _is_root() else ""}
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    proc = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode())
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("nginx did not start")


def _is_root() -> bool:
    import os

    return os.geteuid() == 0


def test_stream_passes_through_nginx_event_by_event(tmp_path, upstream, gunicorn):
    gate = threading.Event()
    events = fake.stream_events("gpt-4o", ["first", "second"])

    def pieces():
        yield sse_bytes(events[0])
        yield sse_bytes(events[1])
        gate.wait(15)  # the rest only after the client saw "first"
        for e in events[2:]:
            yield sse_bytes(e)

    upstream.enqueue(Reply(chunks=pieces()))
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[providers.up]
kind = "openai"
base_url = "{upstream.url}/v1"
models = ["gpt-4o"]
max_retries = 0
""",
    )
    srv = gunicorn(config, workers=1)
    (tmp_path / "nginx").mkdir()
    ngx, port = _nginx(tmp_path / "nginx", srv.port)
    try:
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
            },
            timeout=20,
        ) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            lines = resp.iter_lines()
            seen = []
            for line in lines:
                if line.startswith("data:"):
                    seen.append(line)
                if len(seen) == 2:
                    break
            assert '"first"' in seen[1]
            assert not gate.is_set()  # nginx did not wait for the whole body
            gate.set()
            rest = [ln for ln in lines if ln.startswith("data:")]
        assert '"second"' in rest[0] and rest[-1] == "data: [DONE]"
        # A non-stream call and the error shape survive the proxy too.
        bad = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions", content=b"{", timeout=10
        )
        assert (
            bad.status_code == 400
            and bad.json()["error"]["code"] == "invalid_request_error"
        )
    finally:
        ngx.send_signal(signal.SIGQUIT)
        try:
            ngx.wait(10)
        except subprocess.TimeoutExpired:
            ngx.kill()
