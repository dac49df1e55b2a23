"""The gateway as deployed: gunicorn, gevent workers, gunicorn.conf.py."""

from __future__ import annotations

import concurrent.futures
import threading
from pathlib import Path

import openai

from tests.conftest import write_toml
from tests.fakes import openai as fake
from tests.upstream import Reply


def _toml(up) -> str:
    return f"""
listen = "127.0.0.1:1"
[providers.up]
kind = "openai"
base_url = "{up.url}/v1"
api_key = "sk-upstream"
models = ["gpt-4o"]
max_retries = 0
timeout = 10

[providers.local]
kind = "mock"
models = ["mock"]

[aliases]
gpt4 = "gpt-4o"
"""


def test_sdk_chats_and_streams_through_gunicorn_gevent(tmp_path, upstream, gunicorn):
    srv = gunicorn(write_toml(tmp_path / "crabllm.toml", _toml(upstream)), workers=2)
    client = openai.OpenAI(api_key="x", base_url=f"{srv.url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model="gpt4", messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "echo: hi"
    chunks = list(
        client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks) == "Mock reply: a b c"
    )
    client.close()
    # The master names our class; that the worker runs gevent is checked by
    # its memory maps (below) and by one worker holding 50 streams at once.
    assert "Using worker: crabllm_sync.serving.worker.GeventWorker" in srv.log()


def test_one_worker_serves_many_streams_at_once(tmp_path, upstream, gunicorn):
    """50 streams held open at the same time by a single gevent worker."""
    n = 50
    release = threading.Event()
    events = fake.stream_events("gpt-4o", ["x"])

    def held():
        yield fake_sse(events[0])
        release.wait(20)
        for e in events[1:]:
            yield fake_sse(e)

    for _ in range(n):
        upstream.enqueue(Reply(chunks=held()))
    srv = gunicorn(write_toml(tmp_path / "crabllm.toml", _toml(upstream)), workers=1)
    client = openai.OpenAI(
        api_key="x", base_url=f"{srv.url}/v1", max_retries=0, timeout=30
    )

    def one(_):
        stream = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        upstream.wait_for_requests(n, timeout=30)  # all n are open upstream at once
        release.set()
        results = [f.result(timeout=30) for f in futures]
    client.close()
    assert results == ["x"] * n


def fake_sse(event):
    from tests.upstream import sse_bytes

    return sse_bytes(event)


def test_a_bad_config_stops_gunicorn_with_the_reason_and_exit_1(tmp_path):
    """The master validates the config (in a child) before any worker starts."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = write_toml(
        tmp_path / "crabllm.toml",
        '[providers.up]\nkind = "openai"\nmodels = ["m"]\ntimeout = "soon"\n',
    )
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py")]
        + ["crabllm_sync.wsgi"],
        cwd=tmp_path,
        env={**os.environ, "CRABLLM_CONFIG": str(path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "providers.up.timeout" in done.stderr
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr
    assert "Booting worker" not in done.stderr


def test_the_master_never_loads_gevent_pydantic_or_the_app(
    tmp_path, upstream, gunicorn
):
    """Only workers hold the app and gevent: the master's memory stays
    gunicorn's own."""
    srv = gunicorn(write_toml(tmp_path / "crabllm.toml", _toml(upstream)), workers=1)
    client = openai.OpenAI(api_key="none", base_url=f"{srv.url}/v1", max_retries=0)
    assert client.models.list().data  # a worker is up and answering
    client.close()
    master = (Path(f"/proc/{srv.proc.pid}/maps")).read_text()
    children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text()
    worker = Path(f"/proc/{children.split()[0]}/maps").read_text()
    assert "pydantic_core" in worker  # the check can see a loaded extension
    assert "pydantic_core" not in master
    assert "orjson" not in master
    assert "gevent/_gevent" in worker
    assert "gevent/" not in master
