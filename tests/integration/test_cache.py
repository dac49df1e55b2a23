"""Response cache: hits, bypass, per-key scope, TTL, DELETE /v1/cache."""

from __future__ import annotations

import pytest

from crabllm_sync.storage.memory import MemoryStorage
from tests.conftest import sdk_for_app
from tests.extensions_support import ADMIN, KEY_A, KEY_B, auth, chat_body, ext_config


def post(client, body, key=KEY_A, **headers):
    return client.post(
        "/v1/chat/completions", json=body, headers={**auth(key), **headers}
    )


@pytest.fixture
def cached(upstream, tmp_path, app_factory):
    return app_factory(ext_config(upstream, tmp_path, extensions={"cache": {}}))


def test_second_identical_request_is_a_hit(upstream, cached):
    client = cached.test_client()
    first = post(client, chat_body("same"))
    second = post(client, chat_body("same"))
    assert first.status_code == second.status_code == 200
    assert "x-crabllm-cache" not in first.headers
    assert second.headers["x-crabllm-cache"] == "hit"
    assert second.json == first.json
    assert len(upstream.requests) == 1


def test_openai_sdk_reads_a_cached_answer(upstream, cached):
    sdk = sdk_for_app(cached, KEY_A)
    msgs = [{"role": "user", "content": "q"}]
    a = sdk.chat.completions.create(model="m", messages=msgs)
    raw = sdk.chat.completions.with_raw_response.create(model="m", messages=msgs)
    assert raw.headers["x-crabllm-cache"] == "hit"
    assert raw.parse().choices[0].message.content == a.choices[0].message.content


def test_different_requests_miss(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("one"))
    post(client, chat_body("two"))
    post(client, chat_body("one", temperature=0.5))
    assert len(upstream.requests) == 3


def test_key_order_does_not_matter(upstream, cached):
    client = cached.test_client()
    post(
        client,
        {
            "model": "m",
            "temperature": 0,
            "messages": [{"content": "x", "role": "user"}],
        },
    )
    r = post(
        client,
        {
            "messages": [{"role": "user", "content": "x"}],
            "temperature": 0,
            "model": "m",
        },
    )
    assert r.headers.get("x-crabllm-cache") == "hit"


def test_alias_and_model_share_an_entry(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(upstream, tmp_path, aliases={"fast": "m"}, extensions={"cache": {}})
    )
    client = app.test_client()
    post(client, chat_body("x"))
    r = post(client, {**chat_body("x"), "model": "fast"})
    assert r.headers.get("x-crabllm-cache") == "hit"


def test_no_cache_header_bypasses_and_refreshes(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("z"))
    r = post(client, chat_body("z"), **{"Cache-Control": "no-cache"})
    assert "x-crabllm-cache" not in r.headers
    assert len(upstream.requests) == 2
    assert post(client, chat_body("z")).headers.get("x-crabllm-cache") == "hit"


def test_one_key_never_gets_another_keys_answer(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("secret plans"), KEY_A)
    r = post(client, chat_body("secret plans"), KEY_B)
    assert "x-crabllm-cache" not in r.headers
    assert len(upstream.requests) == 2


def test_shared_cache_drops_the_key_scope(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"cache": {"shared": True}})
    )
    client = app.test_client()
    post(client, chat_body("common"), KEY_A)
    assert post(client, chat_body("common"), KEY_B).headers["x-crabllm-cache"] == "hit"


def test_streams_are_not_cached(upstream, cached):
    client = cached.test_client()
    for _ in range(2):
        r = post(client, chat_body("s", stream=True))
        assert b"[DONE]" in r.data
        assert "x-crabllm-cache" not in r.headers
    assert len(upstream.requests) == 2


def test_embeddings_are_cached(upstream, cached):
    client = cached.test_client()
    body = {"model": "e", "input": ["a", "b"]}
    first = client.post("/v1/embeddings", json=body, headers=auth(KEY_A))
    second = client.post("/v1/embeddings", json=body, headers=auth(KEY_A))
    assert second.headers["x-crabllm-cache"] == "hit"
    assert second.json == first.json
    assert len(upstream.requests) == 1


def test_errors_are_not_cached(upstream, cached):
    from tests.upstream import Reply

    upstream.enqueue(Reply(status=400, json={"error": {"message": "bad"}}))
    client = cached.test_client()
    assert post(client, chat_body("e")).status_code == 400
    r = post(client, chat_body("e"))
    assert r.status_code == 200 and "x-crabllm-cache" not in r.headers


def test_entries_expire_after_ttl(upstream, tmp_path, app_factory):
    now = [1000.0]
    storage = MemoryStorage(clock=lambda: now[0])
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"cache": {"ttl_seconds": 30}}),
        storage=storage,
    )
    client = app.test_client()
    post(client, chat_body("t"))
    now[0] += 29
    assert post(client, chat_body("t")).headers.get("x-crabllm-cache") == "hit"
    now[0] += 2
    assert "x-crabllm-cache" not in post(client, chat_body("t")).headers
    assert len(upstream.requests) == 2


def test_delete_cache_needs_admin_and_clears(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("d"))
    assert client.delete("/v1/cache", headers=auth(KEY_A)).status_code == 403
    r = client.delete("/v1/cache", headers=auth(ADMIN))
    assert r.status_code == 200 and r.json == {"deleted": 1}
    assert "x-crabllm-cache" not in post(client, chat_body("d")).headers


def test_delete_cache_in_memory_with_several_workers_is_409(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("d"))
    several = {"wsgi.multiprocess": True}  # what gunicorn sets with workers > 1
    r = client.delete("/v1/cache", headers=auth(ADMIN), environ_overrides=several)
    assert r.status_code == 409 and "memory storage" in r.json["error"]["message"]
    assert post(client, chat_body("d")).headers["x-crabllm-cache"] == "hit"


def test_a_cache_hit_costs_nothing(upstream, cached):
    client = cached.test_client()
    post(client, chat_body("free"))
    post(client, chat_body("free"))
    rows = client.get("/v1/usage", headers=auth(ADMIN)).json["data"]
    assert rows == [
        {
            "key": "team-a",
            "model": "m",
            "requests": 2,
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
            "cost_usd": 13000 / 1e9,
            "cost_nanos": 13000,
            "input_tokens": 7,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "reasoning_tokens": 0,
            "images": 0,
            "characters": 0,
            "audio_seconds": 0.0,
        }
    ]
