"""Budgets: reserve, settle, refuse with insufficient_quota, periods, /v1/budget."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from crabllm_sync.app import create_app
from crabllm_sync.errors import UpstreamTimeoutError
from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import UsageRecorder
from tests.conftest import openai_provider, sdk_for_app
from tests.extensions_support import (
    ADMIN,
    KEY_A,
    KEY_B,
    FakeClock,
    auth,
    chat_body,
    cost,
    ext_config,
    with_clock,
)
from tests.fakes import openai as fake
from tests.servers import RedisServer, Unavailable
from tests.upstream import Reply

ONE = cost(7, 3)  # what each answer of the fake upstream costs: 13000 nanos


def spent(client, key=KEY_A) -> int:
    r = client.get("/v1/budget", headers=auth(key))
    assert r.status_code == 200, r.json
    (row,) = r.json["data"]
    return row["spent_nanos"]


def test_refused_when_spend_plus_reservation_would_pass_the_budget(
    upstream, tmp_path, app_factory
):
    # 30000 nanos; each request reserves 2 * 1000 + 3 * 2000 = 8000 and costs
    # 13000: 0 + 8000 and 13000 + 8000 fit, 26000 + 8000 would pass the line.
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 3e-5}})
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    assert spent(client) == 2 * ONE
    r = client.get("/v1/budget", headers=auth(KEY_A)).json["data"][0]
    assert r["key"] == "team-a" and r["budget"] == 3e-5
    assert r["remaining_nanos"] == 30_000 - 2 * ONE and r["period"] == "never"
    # Another key has its own budget.
    assert spent(client, KEY_B) == 0


def test_a_request_that_may_cost_more_than_the_budget_is_refused_unspent(
    upstream, tmp_path, app_factory
):
    # No max_tokens: "m" has no known output maximum, so the default 4096
    # tokens are reserved (8.2e6 nanos) against a 1e6 nano budget.
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 1e-3}})
    )
    client = app.test_client()
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 429
    assert r.json["error"]["code"] == "insufficient_quota"
    assert "max_tokens" in r.json["error"]["message"]
    assert upstream.requests == []
    assert spent(client) == 0
    ok = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=100), headers=auth(KEY_A)
    )
    assert ok.status_code == 200


def test_openai_sdk_sees_insufficient_quota(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 0}})
    )
    with pytest.raises(openai.RateLimitError) as exc:
        sdk_for_app(app, KEY_A).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.code == "insufficient_quota"
    assert exc.value.body["type"] == "insufficient_quota"
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("extra", "reserved"),
    [
        # "hello" = 5 chars -> 2 tokens of input, plus max_tokens 10 of output.
        ({"max_tokens": 10}, 2 * 1000 + 10 * 2000),
        # n answers of max_tokens each.
        ({"max_tokens": 10, "n": 3}, 2 * 1000 + 3 * 10 * 2000),
        # No max_tokens: the model's output maximum ([pricing.m]), n times.
        ({"n": 2}, 2 * 1000 + 2 * 50 * 2000),
    ],
    ids=["max_tokens", "n_times_max_tokens", "n_times_model_maximum"],
)
def test_reservation_is_held_in_flight_then_settled(
    upstream, tmp_path, served, app_factory, extra, reserved
):
    pricing = {
        "m": {
            "prompt_cost_per_million": 1.0,
            "completion_cost_per_million": 2.0,
            "max_output_tokens": 50,
        }
    }
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            pricing=pricing,
            extensions={"budget": {"default_budget": 1.0}},
        )
    )
    url = served(app)
    gate = threading.Event()
    upstream.enqueue(Reply(json=fake.completion("m", "x"), hang=gate))
    done = threading.Thread(
        target=httpx.post,
        args=(f"{url}/v1/chat/completions",),
        kwargs={
            "json": chat_body("hello", **extra),
            "headers": auth(KEY_A),
            "timeout": 20,
        },
    )
    done.start()
    upstream.wait_for_requests(1)
    client = app.test_client()
    assert spent(client) == reserved
    gate.set()
    done.join(20)
    assert spent(client) == ONE


def test_failed_requests_give_the_reservation_back(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 1.0}})
    )
    client = app.test_client()
    upstream.enqueue(Reply(status=400, json={"error": {"message": "no"}}))
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 400
    assert spent(client) == 0


def test_per_key_budgets_override_the_default(upstream, tmp_path, app_factory):
    keys = [
        {"name": "team-a", "key": KEY_A, "budget": 2.5},
        {"name": "team-b", "key": KEY_B, "budget": 7.0},
    ]
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            keys=keys,
            extensions={
                "budget": {"default_budget": 1.0, "keys": {"team-b": {"budget": 4.0}}}
            },
        )
    )
    client = app.test_client()
    a = client.get("/v1/budget", headers=auth(KEY_A)).json["data"]
    b = client.get("/v1/budget", headers=auth(KEY_B)).json["data"]
    assert a[0]["budget"] == 2.5
    assert b[0]["budget"] == 4.0
    everyone = client.get("/v1/budget", headers=auth(ADMIN)).json["data"]
    assert {r["key"]: r["budget"] for r in everyone} == {"team-a": 2.5, "team-b": 4.0}


def test_a_key_cannot_read_another_keys_budget(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 1.0}})
    )
    r = app.test_client().get("/v1/budget?key=team-b", headers=auth(KEY_A))
    assert r.status_code == 403


def test_daily_budget_resets_at_utc_midnight(upstream, tmp_path, app_factory):
    clock = FakeClock(1_800_000_000.0 - 1_800_000_000.0 % 86400 + 86400 - 30)
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            extensions={"budget": {"default_budget": 1e-5, "period": "daily"}},
        )
    )
    client = with_clock(app, clock).test_client()

    def post():
        return client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
        ).status_code

    assert [post(), post()] == [200, 429]
    row = client.get("/v1/budget", headers=auth(KEY_A)).json["data"][0]
    assert row["period"] == "daily" and row["resets_at"].endswith("T00:00:00Z")
    clock.advance(60)  # past midnight: a new period, computed from the clock
    assert [post(), post()] == [200, 429]


def test_fifty_parallel_requests_admit_exactly_what_the_budget_covers(
    upstream, tmp_path, served
):
    # 28 chars reserve 7 input tokens (the fake counts 7) and max_tokens 3 the
    # 3 completion tokens: each reservation is exactly the request's cost, so
    # spent + reserved never passes the line, whatever the interleaving, and
    # exactly floor(10.5) = 10 requests fit.
    budget_nanos = 10 * ONE + ONE // 2
    app = create_app(
        ext_config(
            upstream,
            tmp_path,
            extensions={"budget": {"default_budget": budget_nanos / 1e9}},
        )
    )
    url = served(app)
    body = chat_body("hello" * 5 + "abc", max_tokens=3)

    def call(_):
        return httpx.post(
            f"{url}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=30
        ).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(call, range(50)))
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    assert spent(app.test_client()) == 10 * ONE <= budget_nanos


# "hello" = 2 input tokens, max_tokens 10: reserved 2 x 1000 + 10 x 2000.
RESERVED = 22_000


def test_a_timeout_the_provider_may_bill_is_charged_at_the_reserved_estimate(
    upstream, tmp_path, app_factory
):
    # The contract with the transport: an error the provider may bill (a read
    # timeout after the request was sent) carries billable = True.
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 1.0}})
    )
    gw = app.extensions["crabllm"]
    ctx = gw.context("chat", gw.auth.authenticate(auth(KEY_A)))
    gw.prepare(ctx, chat_body("hello", max_tokens=10))
    err = UpstreamTimeoutError("up: timed out", provider="up")
    err.billable = True
    ctx.status = err.http_status
    for ext in gw.extensions:
        ext.on_error(ctx, err)
    assert spent(app.test_client()) == RESERVED
    recorder = find(gw.extensions, UsageRecorder)
    assert recorder.flush()
    (row,) = recorder.db.usage_totals(key_name="team-a")
    assert row["cost_nanos"] == RESERVED and row["requests"] == 1


def test_a_read_timeout_after_sending_is_charged_not_refunded(
    upstream, tmp_path, app_factory
):
    gate = threading.Event()
    upstream.enqueue(Reply(json=fake.completion("m", "late"), hang=gate))
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            providers={"up": openai_provider(upstream, ["m"], timeout=0.5)},
            extensions={"budget": {"default_budget": 1.0}},
        )
    )
    client = app.test_client()
    try:
        r = client.post(
            "/v1/chat/completions",
            json=chat_body("hello", max_tokens=10),
            headers=auth(KEY_A),
        )
    finally:
        gate.set()
    assert r.status_code == 504
    assert spent(client) == RESERVED
    recorder = find(app.extensions["crabllm"].extensions, UsageRecorder)
    assert recorder.flush()
    (row,) = recorder.db.usage_totals(key_name="team-a")
    assert row["cost_nanos"] == RESERVED


def unpriced_config(upstream, tmp_path, **budget):
    # "u" is served but has no price: its requests would cost $0.
    return ext_config(
        upstream,
        tmp_path,
        providers={"up": openai_provider(upstream, ["m", "u"])},
        extensions={"budget": {"default_budget": 1.0, **budget}},
    )


def test_a_budgeted_key_is_refused_an_unpriced_model_by_default(
    upstream, tmp_path, app_factory
):
    config = unpriced_config(upstream, tmp_path)
    assert any("model 'u' has no price" in w for w in config.warnings())
    client = app_factory(config).test_client()
    r = client.post(
        "/v1/chat/completions", json={**chat_body(), "model": "u"}, headers=auth(KEY_A)
    )
    assert r.status_code == 403
    assert "has no price" in r.json["error"]["message"]
    assert upstream.requests == []


def test_unpriced_allow_lets_a_budgeted_key_use_an_unpriced_model(
    upstream, tmp_path, app_factory
):
    app = app_factory(unpriced_config(upstream, tmp_path, unpriced="allow"))
    r = app.test_client().post(
        "/v1/chat/completions", json={**chat_body(), "model": "u"}, headers=auth(KEY_A)
    )
    assert r.status_code == 200


@pytest.fixture
def redis_server():
    try:
        srv = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield srv
    srv.stop()


def test_spend_is_rebuilt_from_the_usage_ledger_after_redis_restarts_empty(
    upstream, tmp_path, redis_server
):
    # Each request reserves and costs exactly ONE; 2.5 x ONE admits two.
    app = create_app(
        ext_config(
            upstream,
            tmp_path,
            storage={"kind": "redis", "path": redis_server.url},
            extensions={"budget": {"default_budget": 2.5 * ONE / 1e9}},
        )
    )
    client = app.test_client()
    body = chat_body("hello" * 5 + "abc", max_tokens=3)

    def post():
        return client.post(
            "/v1/chat/completions", json=body, headers=auth(KEY_A)
        ).status_code

    assert [post(), post()] == [200, 200]
    assert find(app.extensions["crabllm"].extensions, UsageRecorder).flush()
    redis_server.stop()
    redis_server.start()  # no persistence: every counter is gone
    assert post() == 429
    assert spent(client) == 2 * ONE
    assert len(upstream.requests) == 2


def test_budget_standing_is_rebuilt_from_the_ledger_too(
    upstream, tmp_path, redis_server
):
    app = create_app(
        ext_config(
            upstream,
            tmp_path,
            storage={"kind": "redis", "path": redis_server.url},
            extensions={"budget": {"default_budget": 1.0}},
        )
    )
    client = app.test_client()
    r = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
    )
    assert r.status_code == 200
    assert find(app.extensions["crabllm"].extensions, UsageRecorder).flush()
    redis_server.stop()
    redis_server.start()
    assert spent(client) == ONE


def test_a_request_in_flight_across_a_redis_restart_does_not_hide_the_loss(
    upstream, tmp_path, served, redis_server
):
    # Budget 4.5 x ONE. Two requests spend 2 x ONE; a third reserves 27000
    # (max_tokens 10) and is in flight when redis restarts empty; it settles
    # its cost minus its reservation (-14000) into the new counter.
    app = create_app(
        ext_config(
            upstream,
            tmp_path,
            storage={"kind": "redis", "path": redis_server.url},
            extensions={"budget": {"default_budget": 4.5 * ONE / 1e9}},
        )
    )
    url = served(app)
    client = app.test_client()
    recorder = find(app.extensions["crabllm"].extensions, UsageRecorder)
    body = chat_body("hello" * 5 + "abc", max_tokens=3)
    for _ in range(2):
        r = client.post("/v1/chat/completions", json=body, headers=auth(KEY_A))
        assert r.status_code == 200
    gate = threading.Event()
    upstream.enqueue(Reply(json=fake.completion("m", "x"), hang=gate))
    held = threading.Thread(
        target=httpx.post,
        args=(f"{url}/v1/chat/completions",),
        kwargs={
            "json": chat_body("hello" * 5 + "abc", max_tokens=10),
            "headers": auth(KEY_A),
            "timeout": 20,
        },
    )
    held.start()
    upstream.wait_for_requests(3)
    redis_server.stop()
    redis_server.start()
    gate.set()
    held.join(20)
    assert recorder.flush()
    # 37000 reserved: -14000 + 37000 fits 58500; the ledger's 3 x ONE does not.
    r = client.post(
        "/v1/chat/completions",
        json=chat_body("hello" * 5 + "abc", max_tokens=15),
        headers=auth(KEY_A),
    )
    assert r.status_code == 429
    assert len(upstream.requests) == 3
