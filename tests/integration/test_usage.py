"""Usage records and /v1/usage, reconciliation with budget and metrics, buffering."""

from __future__ import annotations

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import MAX_RETRY_DELAY, UsageRecorder
from tests.extensions_support import (
    ADMIN,
    KEY_A,
    KEY_B,
    auth,
    chat_body,
    cost,
    ext_config,
)
from tests.fakes import openai as fake
from tests.upstream import Reply


def recorder(app) -> UsageRecorder:
    rec = find(app.extensions["crabllm"].extensions, UsageRecorder)
    assert rec is not None
    return rec


def rows(app) -> list[dict]:
    rec = recorder(app)
    rec.flush()
    return list(rec.db.m.UsageRecord.select().order_by(rec.db.m.UsageRecord.id).dicts())


def usage(client, key=ADMIN, query=""):
    r = client.get(f"/v1/usage{query}", headers=auth(key))
    assert r.status_code == 200, r.json
    return r.json["data"]


def metric_samples(client) -> dict[str, list]:
    r = client.get("/metrics", headers=auth(ADMIN))
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(r.data.decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def mixed_run(client) -> tuple[int, int]:
    """Non-streams, streams with and without include_usage, embeddings.

    Returns the fake upstream's (prompt, completion) token totals, hand-counted.
    """
    for _ in range(2):
        assert (
            client.post(
                "/v1/chat/completions", json=chat_body("x"), headers=auth(KEY_A)
            ).status_code
            == 200
        )  # 7 + 3 each
    r = client.post(
        "/v1/chat/completions",
        json=chat_body("a b c", stream=True),
        headers=auth(KEY_A),
    )
    assert b"[DONE]" in r.data and b'"usage"' not in r.data  # 7 + 4 ("echo:" a b c)
    r = client.post(
        "/v1/chat/completions",
        json=chat_body("a b", stream=True, stream_options={"include_usage": True}),
        headers=auth(KEY_A),
    )
    assert b'"completion_tokens": 3' in r.data or b'"completion_tokens":3' in r.data
    r = client.post(
        "/v1/embeddings", json={"model": "e", "input": ["p", "q"]}, headers=auth(KEY_A)
    )
    assert r.status_code == 200  # 8 prompt tokens
    return 2 * 7 + 7 + 7 + 8, 2 * 3 + 4 + 3


def test_mixed_run_totals_equal_the_upstream_counts(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    prompt, completion = mixed_run(client)
    data = usage(client)
    assert sum(r["prompt_tokens"] for r in data) == prompt
    assert sum(r["completion_tokens"] for r in data) == completion
    assert sum(r["requests"] for r in data) == 5
    by_model = {r["model"]: r for r in data}
    assert by_model["e"]["cost_nanos"] == 8 * 1000
    assert by_model["m"]["cost_nanos"] == cost(28, 13)
    recorded = rows(app)
    assert [r["stream"] for r in recorded] == [False, False, True, True, False]
    assert not any(r["estimated"] for r in recorded)
    assert {r["provider"] for r in recorded} == {"up"}
    assert all(r["latency_ms"] > 0 for r in recorded)


def test_reconciliation_costs_usage_budget_and_metrics_agree(
    upstream, tmp_path, app_factory
):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"budget": {"default_budget": 100.0}})
    )
    client = app.test_client()
    mixed_run(client)
    upstream.enqueue(Reply(status=400, json={"error": {"message": "bad"}}))
    client.post("/v1/chat/completions", json=chat_body("fails"), headers=auth(KEY_A))
    per_request = sum(r["cost_nanos"] for r in rows(app))
    expected = cost(28 + 8, 13)  # hand-counted from the fake's usage
    assert per_request == expected
    assert sum(r["cost_nanos"] for r in usage(client)) == expected
    budget = client.get("/v1/budget", headers=auth(KEY_A)).json["data"][0]
    assert budget["spent_nanos"] == expected
    samples = metric_samples(client)
    assert sum(s.value for s in samples["crabllm_cost_nanos_total"]) == expected
    statuses: dict[str, float] = {}
    for s in samples["crabllm_requests_total"]:
        statuses[s.labels["status"]] = statuses.get(s.labels["status"], 0) + s.value
    assert statuses == {"200": 5, "400": 1}


def test_a_key_sees_only_its_own_usage(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    assert [r["key"] for r in usage(client, KEY_A)] == ["team-a"]
    assert [r["key"] for r in usage(client, KEY_B)] == ["team-b"]
    assert [r["key"] for r in usage(client, ADMIN)] == ["team-a", "team-b"]
    assert [r["key"] for r in usage(client, ADMIN, "?key=team-b")] == ["team-b"]
    r = client.get("/v1/usage?key=team-b", headers=auth(KEY_A))
    assert r.status_code == 403
    assert client.get("/v1/usage").status_code == 401


def test_usage_filters_model_and_time(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    client.post(
        "/v1/embeddings", json={"model": "e", "input": "z"}, headers=auth(KEY_A)
    )
    assert [r["model"] for r in usage(client, query="?model=e")] == ["e"]
    now = time.time()
    assert len(usage(client, query=f"?from={now - 60}&to={now + 60}")) == 2
    assert usage(client, query=f"?from={now + 60}") == []
    assert usage(client, query="?to=2000-01-01") == []
    assert len(usage(client, query="?from=2000-01-01T00:00:00Z")) == 2
    bad = client.get("/v1/usage?from=yesterday", headers=auth(ADMIN))
    assert bad.status_code == 400 and bad.json["error"]["param"] == "from"


def test_missing_upstream_usage_is_estimated_from_text(upstream, tmp_path, app_factory):
    answer = fake.completion("m", "x" * 40)
    del answer["usage"]
    upstream.enqueue(Reply(json=answer))
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    body = chat_body("y" * 20)
    assert (
        client.post("/v1/chat/completions", json=body, headers=auth(KEY_A)).status_code
        == 200
    )
    (row,) = rows(app)
    assert row["estimated"] is True
    assert (row["input_tokens"], row["output_tokens"]) == (5, 10)
    assert row["cost_nanos"] == cost(5, 10)


def test_failures_are_recorded_at_no_cost(upstream, tmp_path, app_factory):
    upstream.enqueue(Reply(status=404, json={"error": {"message": "nope"}}))
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    assert (
        client.post(
            "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
        ).status_code
        == 404
    )
    (row,) = rows(app)
    assert row["status"] == 404 and row["cost_nanos"] == 0
    assert row["key_name"] == "team-a" and row["model"] == "m"


def test_abandoned_stream_is_recorded_as_499(upstream, tmp_path, served, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    url = served(app)
    events = fake.stream_events("m", ["word"] * 400)
    upstream.enqueue(Reply(events=events, chunk_delay=0.01))
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=chat_body(stream=True),
        headers=auth(KEY_A),
        timeout=20,
    ) as resp:
        for line in resp.iter_lines():
            if '"word"' in line:
                break
    deadline = time.monotonic() + 15
    found: list[dict] = []
    while time.monotonic() < deadline and not found:
        found = rows(app)
        time.sleep(0.02)
    (row,) = found
    assert row["status"] == 499 and row["stream"] is True
    assert row["estimated"] is True  # the usage chunk never came
    assert row["output_tokens"] >= 1


def test_rows_wait_in_the_buffer_through_a_database_outage(
    upstream, tmp_path, app_factory
):
    home = tmp_path / "db"
    home.mkdir()
    config = ext_config(
        upstream,
        tmp_path,
        storage={"kind": "memory", "database": f"sqlite:///{home}/u.db"},
        extensions={"usage": {"flush_interval": 600}},  # flush only when asked
    )
    app = app_factory(config)
    client = app.test_client()
    rec = recorder(app)
    for _ in range(3):
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
        assert r.status_code == 200
    assert rec.pending() == 3  # buffered: requests did not wait on the database
    away = tmp_path / "away"
    home.rename(away)  # the database file is unreachable
    assert rec.flush() is False
    assert rec.pending() == 3
    r = client.get("/v1/usage", headers=auth(ADMIN))
    assert r.status_code == 503 and r.json["error"]["code"] == "service_unavailable"
    away.rename(home)  # it is back
    assert rec.flush() is True and rec.pending() == 0
    assert len(rows(app)) == 3


def test_usage_view_does_not_write_while_the_database_is_failing(
    upstream, tmp_path, app_factory
):
    home = tmp_path / "db"
    home.mkdir()
    config = ext_config(
        upstream,
        tmp_path,
        storage={"kind": "memory", "database": f"sqlite:///{home}/u.db"},
        extensions={"usage": {"flush_interval": 600}},  # flush only when asked
    )
    app = app_factory(config)
    client = app.test_client()
    rec = recorder(app)
    for _ in range(3):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    away = tmp_path / "away"
    home.rename(away)
    assert rec.flush() is False
    away.rename(home)
    # The flusher retries on its own schedule; a GET does not wait on a write.
    assert usage(client) == []
    assert rec.pending() == 3


def test_flush_retries_back_off_to_at_most_two_seconds(upstream, tmp_path, app_factory):
    home = tmp_path / "db"
    home.mkdir()
    config = ext_config(
        upstream,
        tmp_path,
        storage={"kind": "memory", "database": f"sqlite:///{home}/u.db"},
        extensions={"usage": {"flush_interval": 600}},
    )
    app = app_factory(config)
    app.test_client().post(
        "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
    )
    rec = recorder(app)
    home.rename(tmp_path / "away")
    for _ in range(10):
        assert rec.flush() is False
    # Rows wait at most this long once the database is back.
    assert rec.retry_delay == MAX_RETRY_DELAY == 2.0


def test_usage_counts_against_the_keys_requests_per_minute(
    upstream, tmp_path, app_factory
):
    keys = [
        {"name": "team-a", "key": KEY_A, "rate_limit": {"requests_per_minute": 2}},
        {"name": "team-b", "key": KEY_B},
    ]
    config = ext_config(
        upstream,
        tmp_path,
        keys=keys,
        extensions={"rate_limit": {"requests_per_minute": 2}},
    )
    client = app_factory(config).test_client()
    codes = [client.get("/v1/usage", headers=auth(KEY_A)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    r = client.get("/v1/usage", headers=auth(KEY_A))
    assert r.json["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    # The admin token is the operator, not a key: no limit applies.
    admin = [client.get("/v1/usage", headers=auth(ADMIN)) for _ in range(3)]
    assert [a.status_code for a in admin] == [200, 200, 200]


def test_usage_answers_at_most_limit_rows(upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path)).test_client()
    for key in (KEY_A, KEY_B):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
    assert len(usage(client)) == 2
    assert [r["key"] for r in usage(client, query="?limit=1")] == ["team-a"]
    for bad in ("0", "x", "10001"):
        r = client.get(f"/v1/usage?limit={bad}", headers=auth(ADMIN))
        assert r.status_code == 400 and r.json["error"]["param"] == "limit"


def test_close_writes_what_is_buffered(upstream, tmp_path, app_factory):
    config = ext_config(
        upstream, tmp_path, extensions={"usage": {"flush_interval": 600}}
    )
    app = app_factory(config)
    client = app.test_client()
    for _ in range(4):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    rec = recorder(app)
    assert rec.pending() == 4
    app.extensions["crabllm"].close()  # what gunicorn's worker_exit hook does
    assert rec.pending() == 0
    assert rec.db.m.UsageRecord.select().count() == 4


def test_batch_size_wakes_the_flusher(upstream, tmp_path, app_factory):
    config = ext_config(
        upstream,
        tmp_path,
        extensions={"usage": {"flush_interval": 600, "batch_size": 2}},
    )
    app = app_factory(config)
    client = app.test_client()
    rec = recorder(app)
    for _ in range(2):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))

    def written() -> int:
        with rec.db.db.connection_context():
            return rec.db.m.UsageRecord.select().count()

    deadline = time.monotonic() + 15
    while written() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert written() == 2  # long before the 600 s interval


@pytest.mark.parametrize("kind", ["memory"])
def test_memory_storage_without_database_records_nothing(upstream, kind, app_factory):
    from tests.conftest import make_config, openai_provider

    app = app_factory(
        make_config({"providers": {"up": openai_provider(upstream, ["m"])}})
    )
    assert find(app.extensions["crabllm"].extensions, UsageRecorder) is None
    r = app.test_client().get("/v1/usage")
    assert r.status_code == 404
