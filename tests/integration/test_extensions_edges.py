"""Edge cases across extensions: auth off, cached-input pricing end to end,
cache hits and budgets, bad input to the usage endpoints."""

from __future__ import annotations

from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import UsageRecorder
from tests.conftest import make_config, openai_provider
from tests.extensions_support import ADMIN, KEY_A, auth, chat_body, ext_config
from tests.fakes import openai as fake
from tests.upstream import Reply


def test_auth_off_shares_one_limit_and_one_budget(upstream, tmp_path, app_factory):
    config = make_config(
        {
            "providers": {"up": openai_provider(upstream, ["m"])},
            "pricing": {"m": {"prompt_cost_per_million": 1.0}},
            "storage": {"kind": "memory", "database": f"sqlite:///{tmp_path}/u.db"},
            "extensions": {
                "rate_limit": {"requests_per_minute": 2},
                "budget": {"default_budget": 1.0},
            },
        }
    )
    client = app_factory(config).test_client()
    codes = [
        client.post("/v1/chat/completions", json=chat_body()).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]
    (row,) = client.get("/v1/budget").json["data"]
    assert row["key"] == "-" and row["spent_nanos"] == 2 * 7 * 1000
    # GET /v1/usage counts against the same shared requests_per_minute.
    assert client.get("/v1/usage").status_code == 429
    recorder = find(client.application.extensions["crabllm"].extensions, UsageRecorder)
    assert recorder.flush()
    rows = recorder.db.usage_totals()
    assert [(r["key_name"], r["requests"]) for r in rows] == [(None, 3)]


def test_cached_input_is_priced_at_its_own_rate_end_to_end(
    upstream, tmp_path, app_factory
):
    answer = fake.completion("m", "ok", prompt_tokens=1000, completion_tokens=10)
    answer["usage"]["prompt_tokens_details"] = {"cached_tokens": 800}
    answer["usage"]["completion_tokens_details"] = {"reasoning_tokens": 4}
    upstream.enqueue(Reply(json=answer))
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            pricing={
                "m": {
                    "prompt_cost_per_million": 1.0,
                    "completion_cost_per_million": 2.0,
                    "cache_read_cost_per_million": 0.1,
                }
            },
        )
    )
    client = app.test_client()
    assert (
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code
        == 200
    )
    (row,) = client.get("/v1/usage", headers=auth(ADMIN)).json["data"]
    # 200 uncached x 1000 + 800 cached x 100 + 10 output x 2000 nanos
    assert row["cost_nanos"] == 200_000 + 80_000 + 20_000
    assert (row["input_tokens"], row["cache_read_tokens"]) == (200, 800)
    assert row["prompt_tokens"] == 1000 and row["completion_tokens"] == 10
    assert row["reasoning_tokens"] == 4


def test_a_cache_hit_does_not_touch_the_budget(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            extensions={"cache": {}, "budget": {"default_budget": 1.0}},
        )
    )
    client = app.test_client()
    for _ in range(3):
        client.post("/v1/chat/completions", json=chat_body("c"), headers=auth(KEY_A))
    (row,) = client.get("/v1/budget", headers=auth(KEY_A)).json["data"]
    assert row["spent_nanos"] == 7 * 1000 + 3 * 2000


def test_usage_endpoints_reject_bad_input(upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path)).test_client()
    for query in ("?to=not-a-date", "?from=2026-13-45"):
        r = client.get(f"/v1/usage{query}", headers=auth(ADMIN))
        assert r.status_code == 400, query
        assert r.json["error"]["type"] == "invalid_request_error"
    assert client.get("/v1/usage", headers=auth("sk-wrong-key-000")).status_code == 401
    assert client.get("/v1/budget").status_code == 401
    assert client.delete("/v1/cache").status_code == 401
    assert client.post("/v1/usage", headers=auth(ADMIN)).status_code == 405


def test_budget_lists_nothing_for_keys_without_one(upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path)).test_client()
    assert client.get("/v1/budget", headers=auth(KEY_A)).json == {
        "object": "list",
        "data": [],
    }
