"""Budgets: reserve, settle, refuse with insufficient_quota, periods, /v1/budget."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from crabllm_sync.app import create_app
from tests.conftest import sdk_for_app
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
from tests.upstream import Reply

ONE = cost(7, 3)  # what each answer of the fake upstream costs: 13000 nanos


def spent(client, key=KEY_A) -> int:
    r = client.get("/v1/budget", headers=auth(key))
    assert r.status_code == 200, r.json
    (row,) = r.json["data"]
    return row["spent_nanos"]


def test_spend_up_to_the_line_then_insufficient_quota(upstream, tmp_path, app_factory):
    # 30000 nanos: three requests start below the line, the fourth is refused.
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 3e-5}})
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 429, 429]
    assert spent(client) == 3 * ONE
    r = client.get("/v1/budget", headers=auth(KEY_A)).json["data"][0]
    assert r["key"] == "team-a" and r["budget"] == 3e-5
    assert r["remaining"] == 0 and r["period"] == "never"
    # Another key has its own budget.
    assert spent(client, KEY_B) == 0


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


def test_reservation_is_held_in_flight_then_settled(
    upstream, tmp_path, served, app_factory
):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 1.0}})
    )
    url = served(app)
    gate = threading.Event()
    upstream.enqueue(Reply(json=fake.completion("m", "x"), hang=gate))
    done = threading.Thread(
        target=httpx.post,
        args=(f"{url}/v1/chat/completions",),
        kwargs={
            "json": chat_body("hello", max_tokens=10),
            "headers": auth(KEY_A),
            "timeout": 20,
        },
    )
    done.start()
    upstream.wait_for_requests(1)
    client = app.test_client()
    # "hello" = 5 chars -> 2 tokens of input, plus max_tokens 10 of output.
    assert spent(client) == 2 * 1000 + 10 * 2000
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
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code

    assert [post(), post()] == [200, 429]
    row = client.get("/v1/budget", headers=auth(KEY_A)).json["data"][0]
    assert row["period"] == "daily" and row["resets_at"].endswith("T00:00:00Z")
    clock.advance(60)  # past midnight: a new period, computed from the clock
    assert [post(), post()] == [200, 429]


def test_fifty_parallel_requests_overspend_by_at_most_one(upstream, tmp_path, served):
    # 30 chars reserve 8 input tokens (the fake counts 7) and max_tokens 3
    # covers the 3 completion tokens, so each reservation covers its cost:
    # a request is admitted only while (spent + reserved) is under the line,
    # so the overspend is below one request's cost.
    budget_nanos = 10 * ONE + ONE // 2
    app = create_app(
        ext_config(
            upstream,
            tmp_path,
            extensions={"budget": {"default_budget": budget_nanos / 1e9}},
        )
    )
    url = served(app)
    body = chat_body("hello" * 6, max_tokens=3)

    def call(_):
        return httpx.post(
            f"{url}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=30
        ).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(call, range(50)))
    ok = statuses.count(200)
    assert statuses.count(429) == 50 - ok
    total = spent(app.test_client())
    assert total == ok * ONE
    assert ok >= 10  # the budget was used
    assert total - budget_nanos < ONE
