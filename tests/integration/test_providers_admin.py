"""Providers at run time through /v1/admin/providers, in-process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from crabllm_sync.catalog.live import POLL_INTERVAL
from tests.conftest import ROOT, make_config
from tests.extensions_support import ADMIN, KEY_A, auth, chat_body
from tests.servers import wait_for
from tests.upstream import serve_app

UPSTREAM_SECRET = "sk-live-upstream-secret-abcd1234wxyz"


def config(tmp_path, **over):
    data = {
        "admin_token": ADMIN,
        "providers": {"local": {"kind": "mock", "models": ["mock"]}},
        "keys": [{"name": "team-a", "key": KEY_A}],
        "storage": {"kind": "sqlite", "path": str(tmp_path / "gw.db")},
        **over,
    }
    return make_config(data)


def new_provider(upstream, **over):
    return {
        "name": "live",
        "kind": "openai",
        "base_url": f"{upstream.url}/v1",
        "api_key": UPSTREAM_SECRET,
        "models": ["m"],
        "max_retries": 0,
        **over,
    }


def admin(client, method, path, body=None):
    return client.open(path, method=method, json=body, headers=auth(ADMIN))


def chat_status(client, model="m") -> int:
    r = client.post(
        "/v1/chat/completions", json=chat_body(model=model), headers=auth(KEY_A)
    )
    return r.status_code


def test_an_added_provider_serves_at_once_with_its_secret_masked(
    upstream, tmp_path, app_factory, caplog
):
    caplog.set_level(logging.DEBUG)
    client = app_factory(config(tmp_path)).test_client()
    assert chat_status(client) == 404
    r = admin(client, "POST", "/v1/admin/providers", new_provider(upstream))
    assert r.status_code == 201, r.json
    assert r.json["api_key"] == "sk-...wxyz"
    assert r.json["source"] == "api" and r.json["models"] == ["m"]
    assert chat_status(client) == 200
    sent = upstream.requests[-1]
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    listed = admin(client, "GET", "/v1/admin/providers").json["data"]
    assert [(p["name"], p["source"]) for p in listed] == [
        ("local", "config"),
        ("live", "api"),
    ]
    shown = admin(client, "GET", "/v1/admin/providers/live")
    for answer in (r, shown):
        assert UPSTREAM_SECRET not in answer.get_data(as_text=True)
    assert listed[1]["api_key"] == "sk-...wxyz"
    # Nothing of ours logs it; peewee's own DEBUG logger prints SQL
    # parameters (docs/admin.md: keep the `peewee` logger above DEBUG).
    logged = [r.getMessage() for r in caplog.records if r.name != "peewee"]
    assert logged and not any(UPSTREAM_SECRET in m for m in logged)


def test_patch_changes_what_is_served_and_keeps_the_secret(
    upstream, tmp_path, app_factory
):
    client = app_factory(config(tmp_path)).test_client()
    admin(client, "POST", "/v1/admin/providers", new_provider(upstream))
    r = admin(client, "PATCH", "/v1/admin/providers/live", {"models": ["m2"]})
    assert r.status_code == 200, r.json
    assert r.json["models"] == ["m2"] and r.json["api_key"] == "sk-...wxyz"
    assert chat_status(client, "m") == 404
    assert chat_status(client, "m2") == 200
    assert upstream.requests[-1].headers["authorization"].endswith(UPSTREAM_SECRET)
    # null resets a field to its default
    r = admin(client, "PATCH", "/v1/admin/providers/live", {"max_retries": None})
    assert r.json["max_retries"] == 2
    r = admin(client, "DELETE", "/v1/admin/providers/live")
    assert r.status_code == 200 and r.json["deleted"] is True
    assert chat_status(client, "m2") == 404
    assert admin(client, "GET", "/v1/admin/providers/live").status_code == 404


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "my-llm", "base_url": None}, "needs base_url"),
        ({"weight": -1}, "'weight'"),
        ({"kind": "anthropic", "models": []}, "needs 'models'"),
        ({"tokens": 5}, "unknown field"),
        ({"name": "../x"}, "invalid provider name"),
    ],
)
def test_a_provider_that_does_not_validate_is_refused_and_nothing_changes(
    upstream, tmp_path, app_factory, body, reason
):
    client = app_factory(config(tmp_path)).test_client()
    before = admin(client, "GET", "/v1/admin/providers").json
    r = admin(client, "POST", "/v1/admin/providers", new_provider(upstream, **body))
    assert r.status_code == 400, r.json
    assert reason in r.json["error"]["message"]
    assert admin(client, "GET", "/v1/admin/providers").json == before
    assert chat_status(client) == 404


def test_a_bad_patch_is_refused_and_the_provider_keeps_serving(
    upstream, tmp_path, app_factory
):
    client = app_factory(config(tmp_path)).test_client()
    admin(client, "POST", "/v1/admin/providers", new_provider(upstream))
    r = admin(client, "PATCH", "/v1/admin/providers/live", {"timeout": 0})
    assert r.status_code == 400 and "'timeout'" in r.json["error"]["message"]
    assert admin(client, "GET", "/v1/admin/providers/live").json["timeout"] == 30
    assert chat_status(client) == 200


def test_config_file_providers_are_read_only_409_naming_the_file(
    upstream, tmp_path, app_factory
):
    app = app_factory(config(tmp_path), config_file="/etc/crabllm/crabllm.toml")
    client = app.test_client()
    for method, body in (("PATCH", {"weight": 2}), ("DELETE", None)):
        r = admin(client, method, "/v1/admin/providers/local", body)
        assert r.status_code == 409, r.json
        assert "/etc/crabllm/crabllm.toml" in r.json["error"]["message"]
    r = admin(
        client, "POST", "/v1/admin/providers", new_provider(upstream, name="local")
    )
    assert r.status_code == 409
    assert admin(client, "GET", "/v1/admin/providers/local").json["source"] == "config"
    r = admin(client, "POST", "/v1/admin/providers", new_provider(upstream))
    assert (
        admin(client, "POST", "/v1/admin/providers", new_provider(upstream)).status_code
        == 409
    )


def test_admin_token_is_required(upstream, tmp_path, app_factory):
    client = app_factory(config(tmp_path)).test_client()
    assert client.get("/v1/admin/providers").status_code == 401
    r = client.get("/v1/admin/providers", headers=auth(KEY_A))
    assert r.status_code == 403
    r = client.post(
        "/v1/admin/providers", json=new_provider(upstream), headers=auth(KEY_A)
    )
    assert r.status_code == 403


def test_memory_storage_without_a_database_refuses_changes(
    upstream, tmp_path, app_factory
):
    client = app_factory(config(tmp_path, storage={"kind": "memory"})).test_client()
    r = admin(client, "POST", "/v1/admin/providers", new_provider(upstream))
    assert r.status_code == 409 and "SQL database" in r.json["error"]["message"]
    assert [
        p["name"] for p in admin(client, "GET", "/v1/admin/providers").json["data"]
    ] == ["local"]


def test_another_gateway_on_the_same_database_serves_the_change_by_polling(
    upstream, tmp_path, app_factory
):
    one = app_factory(config(tmp_path)).test_client()
    two = app_factory(config(tmp_path)).test_client()
    assert chat_status(two) == 404
    admin(one, "POST", "/v1/admin/providers", new_provider(upstream))
    deadline = time.monotonic() + 5
    while chat_status(two) != 200:
        assert time.monotonic() < deadline, "not served by the other gateway in 5 s"
        time.sleep(POLL_INTERVAL / 10)
    admin(one, "DELETE", "/v1/admin/providers/live")
    while chat_status(two) != 404:
        assert time.monotonic() < deadline + 5, "still served after removal"
        time.sleep(POLL_INTERVAL / 10)


def test_a_restarted_gateway_serves_the_stored_providers(
    upstream, tmp_path, app_factory
):
    one = app_factory(config(tmp_path)).test_client()
    admin(one, "POST", "/v1/admin/providers", new_provider(upstream))
    again = app_factory(config(tmp_path)).test_client()
    assert chat_status(again) == 200


@pytest.fixture
def keep_alive_upstream() -> Iterator[int]:
    """bench/mock.py in its own process: an OpenAI upstream that keeps its
    HTTP/1.1 connections open between requests, as providers do (the
    werkzeug-based Upstream closes each); a model ending in "slow" streams
    20 chunks 50 ms apart. Yields its port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.mock", "--port", "0", "--slow-ms", "50"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready PORT" once listening
        assert line.startswith("ready "), line
        yield int(line.split()[1])
    finally:
        proc.terminate()
        proc.wait(10)


def _open_connections(port: int) -> int:
    """This process's ESTABLISHED TCP connections to 127.0.0.1:`port`."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="Linux /proc")
def test_a_changed_or_removed_provider_closes_its_pooled_connections(
    keep_alive_upstream, tmp_path, app_factory
):
    port = keep_alive_upstream
    provider = {
        "name": "live",
        "kind": "openai",
        "base_url": f"http://127.0.0.1:{port}/v1",
        "api_key": UPSTREAM_SECRET,
        "models": ["m", "m-slow"],
        "max_retries": 0,
    }
    app = app_factory(config(tmp_path))
    server, url = serve_app(app)  # a real server: streams run as they do live
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            added = client.post(
                "/v1/admin/providers", json=provider, headers=auth(ADMIN)
            )
            assert added.status_code == 201, added.text
            chat = {"json": chat_body(model="m"), "headers": auth(KEY_A)}
            assert client.post("/v1/chat/completions", **chat).status_code == 200
            assert _open_connections(port) == 1  # pooled, kept alive
            # The swap closes the old pool itself, whoever still holds the
            # transport (a request in flight; a boto3 client's reference
            # cycles, until a gc pass): hold it here too.
            gw = app.extensions["crabllm"]
            old = gw.session(gw.registry.models["m"][0])
            # A stream in flight on the old pool when the provider changes
            # runs to its end; its connection is closed after, not pooled.
            slow = {
                "json": chat_body(model="m-slow", stream=True),
                "headers": auth(KEY_A),
            }
            with client.stream("POST", "/v1/chat/completions", **slow) as r:
                pieces = r.iter_lines()
                first = next(pieces)
                patched = client.patch(
                    "/v1/admin/providers/live",
                    json={"models": ["m", "m-slow", "m2"]},
                    headers=auth(ADMIN),
                )
                assert patched.status_code == 200, patched.text
                assert _open_connections(port) == 1  # the stream's, still open
                lines = [first, *pieces]
            assert lines[-2:] == ["data: [DONE]", ""] or "data: [DONE]" in lines
            chunks = [x for x in lines if x.startswith("data: {")]
            assert len(chunks) >= 20  # every chunk came through
            # The gateway releases the upstream response when the server
            # closes its answer's iterator, just after the last byte.
            wait_for(lambda: _open_connections(port) == 0, 5, "the stream's close")
            # The changed provider serves on a pool of its own.
            assert client.post("/v1/chat/completions", **chat).status_code == 200
            assert _open_connections(port) == 1
            assert gw.session(gw.registry.models["m"][0]) is not old
            old = gw.session(gw.registry.models["m"][0])
            deleted = client.delete("/v1/admin/providers/live", headers=auth(ADMIN))
            assert deleted.status_code == 200
            assert _open_connections(port) == 0
            del old
    finally:
        server.shutdown()
        server.server_close()
