"""x-crabllm-overhead-ms on every answer, and crabllm_overhead_seconds."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.extensions_support import ADMIN, KEY_A, auth, chat_body, ext_config
from tests.fakes import openai as fake
from tests.upstream import Reply

HEADER = "x-crabllm-overhead-ms"
UPSTREAM_DELAY = 0.5


def overhead_ms(response) -> float:
    value = float(response.headers[HEADER])
    assert value >= 0
    return value


def test_overhead_leaves_out_the_time_waiting_on_the_upstream(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    upstream.enqueue(Reply(json=fake.completion("m", "hi"), delay=UPSTREAM_DELAY))
    started = time.monotonic()
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    total_ms = (time.monotonic() - started) * 1000
    assert r.status_code == 200
    # The upstream's delay is inside the total and outside the overhead.
    assert overhead_ms(r) <= total_ms - UPSTREAM_DELAY * 1000


def test_a_streams_overhead_is_up_to_its_first_byte_without_the_upstream(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    events = fake.stream_events("m", ["a", "b"], usage=False)
    upstream.enqueue(Reply(events=events, delay=UPSTREAM_DELAY))
    started = time.monotonic()
    r = client.post(
        "/v1/chat/completions", json=chat_body(stream=True), headers=auth(KEY_A)
    )
    headers_ms = (time.monotonic() - started) * 1000
    assert overhead_ms(r) <= headers_ms - UPSTREAM_DELAY * 1000
    assert b"[DONE]" in r.data


def test_retry_backoff_and_failed_attempts_are_not_overhead(
    upstream, tmp_path, app_factory
):
    config = ext_config(
        upstream,
        tmp_path,
        providers={
            "up": {
                "kind": "openai",
                "base_url": f"{upstream.url}/v1",
                "api_key": "sk-upstream",
                "models": ["m"],
                "max_retries": 1,
                "timeout": 5,
            }
        },
    )
    app = app_factory(config)
    client = app.test_client()
    upstream.enqueue(
        Reply(status=500, json={"error": {"message": "boom"}}, delay=UPSTREAM_DELAY),
        Reply(json=fake.completion("m", "hi"), delay=UPSTREAM_DELAY),
    )
    started = time.monotonic()
    r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    total_ms = (time.monotonic() - started) * 1000
    assert r.status_code == 200, r.json
    assert len(upstream.requests) == 2
    assert overhead_ms(r) <= total_ms - 2 * UPSTREAM_DELAY * 1000


def test_every_answer_carries_the_overhead_header(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    answers = [
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)),
        client.post("/v1/chat/completions", json=chat_body()),  # 401
        client.post(
            "/v1/chat/completions", json={"model": "nope"}, headers=auth(KEY_A)
        ),  # 400
        client.get("/v1/models", headers=auth(KEY_A)),
        client.get("/health"),
        client.get("/v1/no-such-route"),  # 404
        client.get("/metrics", headers=auth(ADMIN)),
    ]
    for r in answers:
        overhead_ms(r)


def test_overhead_histogram_counts_each_api_request(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    for _ in range(3):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    r = client.get("/metrics", headers=auth(ADMIN))
    counts = {
        s.labels["endpoint"]: s.value
        for fam in text_string_to_metric_families(r.data.decode())
        for s in fam.samples
        if s.name == "crabllm_overhead_seconds_count"
    }
    assert counts == {"chat": 3}
