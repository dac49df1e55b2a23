"""Requests and tokens per minute, in-process on memory storage with a fake clock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from crabllm_sync.app import create_app
from tests.conftest import sdk_for_app
from tests.extensions_support import (
    KEY_A,
    KEY_B,
    FakeClock,
    auth,
    chat_body,
    ext_config,
    with_clock,
)
from tests.fakes import openai as fake
from tests.upstream import Reply


@pytest.fixture
def clock():
    # 10 s into a minute, so a test's requests share one fixed window.
    return FakeClock(1_800_000_010.0 - 1_800_000_010.0 % 60 + 10)


MADE: list = []  # the apps make() built for the running test


@pytest.fixture(autouse=True)
def _close_made_apps():
    """Close each test's apps (their usage flushers) after it."""
    yield
    while MADE:
        MADE.pop().extensions["crabllm"].close()


def make(upstream, tmp_path, clock, **over):
    app = create_app(ext_config(upstream, tmp_path, **over))
    app.testing = True
    MADE.append(app)
    return with_clock(app, clock)


def test_rpm_lets_exactly_n_through_then_429_with_openai_headers(
    upstream, tmp_path, clock
):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"requests_per_minute": 3}}
    )
    client = app.test_client()
    statuses = []
    for _ in range(5):
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
        statuses.append(r.status_code)
        last = r
        if r.status_code == 200:
            assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert statuses == [200, 200, 200, 429, 429]
    assert len(upstream.requests) == 3
    assert last.json["error"]["code"] == "rate_limit_exceeded"
    assert last.json["error"]["type"] == "rate_limit_error"
    # 50 s to the window end, then 3 * (1 - e/60) <= 2 needs e >= 20 s.
    assert last.headers["Retry-After"] == "70"
    assert last.headers["x-ratelimit-remaining-requests"] == "0"
    assert last.headers["x-ratelimit-reset-requests"] == "1m50s"


def test_remaining_counts_down_on_successes(upstream, tmp_path, clock):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"requests_per_minute": 3}}
    )
    client = app.test_client()
    seen = [
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).headers["x-ratelimit-remaining-requests"]
        for _ in range(3)
    ]
    assert seen == ["2", "1", "0"]


def test_openai_sdk_sees_rate_limit_error_and_retry_after(upstream, tmp_path, clock):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"requests_per_minute": 1}}
    )
    sdk = sdk_for_app(app, KEY_A)
    raw = sdk.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as exc:
        sdk.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.code == "rate_limit_exceeded"
    assert int(exc.value.response.headers["retry-after"]) > 0


def test_limits_are_per_key_and_a_key_override_wins(upstream, tmp_path, clock):
    keys = [
        {"name": "team-a", "key": KEY_A, "rate_limit": {"requests_per_minute": 1}},
        {"name": "team-b", "key": KEY_B},
    ]
    app = make(
        upstream,
        tmp_path,
        clock,
        keys=keys,
        extensions={"rate_limit": {"requests_per_minute": 2}},
    )
    client = app.test_client()

    def post(key):
        return client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(key)
        ).status_code

    assert [post(KEY_A), post(KEY_A)] == [200, 429]
    assert [post(KEY_B), post(KEY_B), post(KEY_B)] == [200, 200, 429]


def test_window_slides_with_the_clock(upstream, tmp_path, clock):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"requests_per_minute": 2}}
    )
    client = app.test_client()

    def post():
        return client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code

    assert [post(), post(), post()] == [200, 200, 429]
    clock.advance(50)  # next window, 0 s in: previous window weighs fully
    assert post() == 429
    clock.advance(30)  # 30 s in: 2 * 0.5 = 1 counted, one more fits
    assert [post(), post()] == [200, 429]
    clock.advance(120)  # both windows gone
    assert [post(), post(), post()] == [200, 200, 429]


def test_refused_requests_do_not_extend_the_block(upstream, tmp_path, clock):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"requests_per_minute": 1}}
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code
        for _ in range(20)
    ]
    assert statuses == [200] + [429] * 19
    clock.advance(120)
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert r.status_code == 200


def test_tpm_reserves_the_estimate_then_settles_to_actual_usage(
    upstream, tmp_path, clock
):
    # Each request reserves its prompt estimate plus max_tokens 3 and then
    # counts what the answer reported: 7 + 3 tokens (the stream "a b" too).
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"tokens_per_minute": 25}}
    )
    client = app.test_client()
    r1 = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
    )
    assert r1.status_code == 200
    assert r1.headers["x-ratelimit-remaining-tokens"] == "20"  # 25 - (2 + 3)
    r2 = client.post(
        "/v1/chat/completions",
        json=chat_body("a b", stream=True, max_tokens=3),
        headers=auth(KEY_A),
    )
    assert r2.status_code == 200
    assert b"[DONE]" in r2.data  # drain the stream: usage is settled at its end
    assert r2.headers["x-ratelimit-remaining-tokens"] == "11"  # 25 - 10 - (1 + 3)
    r3 = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
    )
    assert r3.headers["x-ratelimit-remaining-tokens"] == "0"  # 25 - 20 - 5
    r4 = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=3), headers=auth(KEY_A)
    )
    assert r4.status_code == 429
    assert r4.json["error"]["code"] == "rate_limit_exceeded"
    assert "tokens per minute" in r4.json["error"]["message"]
    assert r4.headers["x-ratelimit-remaining-tokens"] == "0"
    assert len(upstream.requests) == 3


def test_tpm_limits_a_burst_while_it_is_in_flight(upstream, tmp_path, served):
    # Nothing has finished, so nothing is counted as used yet: the reservations
    # (2 + 40 tokens each) alone must stop the third request of the burst.
    app = create_app(
        ext_config(
            upstream, tmp_path, extensions={"rate_limit": {"tokens_per_minute": 100}}
        )
    )
    url = served(app)
    gate = threading.Event()
    for _ in range(2):
        upstream.enqueue(Reply(json=fake.completion("m", "x"), hang=gate))
    body = chat_body(max_tokens=40)
    held = [
        threading.Thread(
            target=httpx.post,
            args=(f"{url}/v1/chat/completions",),
            kwargs={"json": body, "headers": auth(KEY_A), "timeout": 20},
        )
        for _ in range(2)
    ]
    for t in held:
        t.start()
    try:
        upstream.wait_for_requests(2)
        third = httpx.post(
            f"{url}/v1/chat/completions", json=body, headers=auth(KEY_A), timeout=20
        )
    finally:
        gate.set()
        for t in held:
            t.join(20)
    assert third.status_code == 429
    assert "tokens per minute" in third.json()["error"]["message"]
    assert len(upstream.requests) == 2


def test_tpm_gives_a_failed_requests_reservation_back(upstream, tmp_path, clock):
    app = make(
        upstream, tmp_path, clock, extensions={"rate_limit": {"tokens_per_minute": 25}}
    )
    client = app.test_client()
    upstream.enqueue(Reply(status=400, json={"error": {"message": "no"}}))
    r = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=20), headers=auth(KEY_A)
    )
    assert r.status_code == 400
    again = client.post(
        "/v1/chat/completions", json=chat_body(max_tokens=20), headers=auth(KEY_A)
    )
    assert again.status_code == 200


def test_no_limit_configured_means_no_headers(upstream, tmp_path, clock):
    app = make(upstream, tmp_path, clock)
    r = app.test_client().post(
        "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
    )
    assert r.status_code == 200
    assert not [h for h in r.headers.keys() if h.lower().startswith("x-ratelimit")]


def test_budget_refusal_still_carries_rate_limit_headers(upstream, tmp_path, clock):
    app = make(
        upstream,
        tmp_path,
        clock,
        extensions={
            "rate_limit": {"requests_per_minute": 10},
            "budget": {"default_budget": 0.0},
        },
    )
    r = app.test_client().post(
        "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
    )
    assert r.status_code == 429
    assert r.json["error"]["code"] == "insufficient_quota"
    assert r.headers["x-ratelimit-remaining-requests"] == "9"


def test_parallel_requests_get_exactly_the_limit(upstream, tmp_path, served, clock):
    # The fake clock holds all 40 requests in one window wherever the real
    # minute is; the threads race on the counter itself.
    app = make(
        upstream,
        tmp_path,
        clock,
        extensions={"rate_limit": {"requests_per_minute": 10}},
    )
    url = served(app)

    def call(_):
        return httpx.post(
            f"{url}/v1/chat/completions",
            json=chat_body(),
            headers=auth(KEY_A),
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(call, range(40)))
    assert codes.count(200) == 10 and codes.count(429) == 30
