"""A real nginx with deploy/nginx.conf before gunicorn: streams pass event by event."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.conftest import write_toml
from tests.fakes import openai as fake
from tests.servers import NGINX, Nginx
from tests.upstream import Reply, sse_bytes

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")


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
    ngx = Nginx(tmp_path / "nginx", [srv.port])
    port = ngx.port
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
        ngx.stop()
