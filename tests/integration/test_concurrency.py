"""max_parallel_requests: slots are taken, refused when full, never leaked."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.extensions_support import KEY_A, KEY_B, auth, chat_body, ext_config
from tests.fakes import openai as fake
from tests.upstream import Reply


def wait_until(cond, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return False


def leases(app) -> list[str]:
    return [k for k, _ in app.extensions["crabllm"].storage.list_prefix("conc:")]


@pytest.fixture
def limited(upstream, tmp_path, served, app_factory):
    keys = [
        {"name": "team-a", "key": KEY_A, "max_parallel_requests": 2},
        {"name": "team-b", "key": KEY_B},
    ]
    app = app_factory(ext_config(upstream, tmp_path, keys=keys))
    return app, served(app)


def test_third_parallel_request_is_refused_and_slots_come_back(upstream, limited):
    app, url = limited
    gate = threading.Event()
    upstream.enqueue(
        Reply(json=fake.completion("m", "one"), hang=gate),
        Reply(json=fake.completion("m", "two"), hang=gate),
    )
    results: list[int] = []

    def call():
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json=chat_body(),
            headers=auth(KEY_A),
            timeout=20,
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    upstream.wait_for_requests(2)
    third = httpx.post(
        f"{url}/v1/chat/completions", json=chat_body(), headers=auth(KEY_A), timeout=20
    )
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert "parallel" in third.json()["error"]["message"]
    assert "Retry-After" in third.headers
    # Another key is not affected.
    other = httpx.post(
        f"{url}/v1/chat/completions", json=chat_body(), headers=auth(KEY_B), timeout=20
    )
    assert other.status_code == 200
    gate.set()
    for t in threads:
        t.join(20)
    assert results == [200, 200]
    assert leases(app) == []
    again = httpx.post(
        f"{url}/v1/chat/completions", json=chat_body(), headers=auth(KEY_A), timeout=20
    )
    assert again.status_code == 200


def test_errors_release_the_slot(upstream, limited):
    app, url = limited
    for _ in range(3):
        upstream.enqueue(Reply(status=400, json={"error": {"message": "bad"}}))
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json=chat_body(),
            headers=auth(KEY_A),
            timeout=20,
        )
        assert r.status_code == 400
    assert leases(app) == []


def test_client_disconnect_mid_stream_releases_the_slot(upstream, limited):
    app, url = limited
    events = fake.stream_events("m", [f"w{i}" for i in range(400)])
    upstream.enqueue(Reply(events=events, chunk_delay=0.01))
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=chat_body(stream=True),
        headers=auth(KEY_A),
        timeout=20,
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data:"):
                break
        assert len(leases(app)) == 1
    # The client hung up; the gateway notices on its next write.
    assert wait_until(lambda: leases(app) == []), leases(app)


def test_refused_request_holds_no_slot(upstream, tmp_path, app_factory):
    keys = [{"name": "team-a", "key": KEY_A, "max_parallel_requests": 1}]
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            keys=keys,
            extensions={"rate_limit": {"requests_per_minute": 1}},
        )
    )
    client = app.test_client()
    assert (
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code
        == 200
    )
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 429 and "per minute" in r.json["error"]["message"]
    assert leases(app) == []


def test_a_dead_workers_slot_expires_with_its_lease(upstream, tmp_path, app_factory):
    from crabllm_sync.storage.memory import MemoryStorage

    now = [1000.0]
    storage = MemoryStorage(clock=lambda: now[0])
    keys = [{"name": "team-a", "key": KEY_A, "max_parallel_requests": 1}]
    app = app_factory(
        ext_config(upstream, tmp_path, keys=keys, routing={"request_deadline": 30}),
        storage=storage,
    )
    # A worker took the only slot and died before releasing it.
    exts = app.extensions["crabllm"].extensions
    ttl = next(e for e in exts if e.name == "concurrency").lease_ttl
    assert ttl == 30 + 60
    assert storage.incr("conc:team-a:0", 1, ttl) == 1
    client = app.test_client()
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 429
    now[0] += ttl + 1
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 200
    assert leases(app) == []


def test_lease_seconds_sets_how_long_a_dead_hosts_slot_stays(
    upstream, tmp_path, app_factory
):
    from crabllm_sync.storage.memory import MemoryStorage

    now = [1000.0]
    storage = MemoryStorage(clock=lambda: now[0])
    keys = [{"name": "team-a", "key": KEY_A, "max_parallel_requests": 1}]
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            keys=keys,
            extensions={"rate_limit": {"lease_seconds": 9}},
        ),
        storage=storage,
    )
    conc = next(
        e for e in app.extensions["crabllm"].extensions if e.name == "concurrency"
    )
    # A stream renews three times per lease, so it never outlives its own.
    assert (conc.lease_ttl, conc.renew_every) == (9, 3)
    assert storage.incr("conc:team-a:0", 1, conc.lease_ttl) == 1  # a dead holder
    client = app.test_client()
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 429
    now[0] += 9.5
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 200
