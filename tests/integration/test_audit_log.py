"""The request log: one record per outcome, GET /v1/admin/logs filters and
cursor, bodies redacted and capped, retention, rollups."""

from __future__ import annotations

import pytest

from crabllm_sync.audit.store import rollups
from crabllm_sync.extensions import find
from crabllm_sync.extensions.audit import AuditLog
from tests.extensions_support import ADMIN, KEY_A, KEY_B, auth, chat_body, ext_config
from tests.upstream import Reply

PROVIDER_SECRET = "sk-upstream-provider-secret-42"


def audit(app) -> AuditLog:
    ext = find(app.extensions["crabllm"].extensions, AuditLog)
    assert ext is not None
    return ext


def logs(client, query: str = "", key: str = ADMIN):
    r = client.get(f"/v1/admin/logs{query}", headers=auth(key))
    assert r.status_code == 200, r.json
    return r.json


def test_every_outcome_is_recorded_with_status_error_and_attempts(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    assert (
        client.post(
            "/v1/chat/completions", json=chat_body("x"), headers=auth(KEY_A)
        ).status_code
        == 200
    )
    upstream.enqueue(Reply(status=400, json={"error": {"message": "bad input"}}))
    assert (
        client.post(
            "/v1/chat/completions", json=chat_body("y"), headers=auth(KEY_B)
        ).status_code
        == 400
    )
    r = client.post(
        "/v1/chat/completions", json=chat_body("z", stream=True), headers=auth(KEY_A)
    )
    assert b"[DONE]" in r.data
    data = logs(client)["data"]
    assert [d["status"] for d in data] == [200, 400, 200]  # newest first
    stream, failed, ok = data
    assert ok["key"] == "team-a" and ok["model"] == "m" and ok["provider"] == "up"
    assert ok["input_tokens"] == 7 and ok["output_tokens"] == 3
    assert ok["cost_nanos"] == 7 * 1000 + 3 * 2000
    assert ok["attempts"] == 1 and ok["providers_tried"] == ["up"]
    assert ok["error"] is None and ok["latency_ms"] > 0
    assert 0 < ok["ttfb_ms"] <= ok["latency_ms"]
    assert failed["key"] == "team-b"
    assert "bad input" in failed["error"]["message"]
    assert stream["stream"] is True
    assert ok["request_body"] is None  # bodies are off by default


def test_logs_filter_by_key_status_model_and_request_id(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    for key in (KEY_A, KEY_B, KEY_A):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
    upstream.enqueue(Reply(status=400, json={"error": {"message": "no"}}))
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    assert len(logs(client, "?key=team-a")["data"]) == 2
    assert [d["status"] for d in logs(client, "?status=error")["data"]] == [400]
    assert len(logs(client, "?status=2xx")["data"]) == 3
    assert len(logs(client, "?model=m&provider=up")["data"]) == 4
    assert logs(client, "?model=other")["data"] == []
    one = logs(client)["data"][1]
    found = logs(client, f"?request_id={one['request_id']}")["data"]
    assert [d["id"] for d in found] == [one["id"]]
    r = client.get(f"/v1/admin/logs/{one['id']}", headers=auth(ADMIN))
    assert r.json["request_id"] == one["request_id"]
    assert client.get("/v1/admin/logs/999999", headers=auth(ADMIN)).status_code == 404
    # An id past SQL's BIGINT names no record (sqlite's driver overflowed: a 500).
    huge = client.get(f"/v1/admin/logs/{2**88}", headers=auth(ADMIN))
    assert huge.status_code == 404


def test_logs_cursor_pages_through_every_record_once(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    for _ in range(5):
        client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    seen, cursor, pages = [], "", 0
    while True:
        page = logs(client, f"?limit=2{'&after=' + cursor if cursor else ''}")
        seen += [d["id"] for d in page["data"]]
        pages += 1
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(set(seen)) == 5


def test_logs_are_admin_only_and_reject_bad_arguments(upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path)).test_client()
    assert client.get("/v1/admin/logs").status_code == 401
    assert client.get("/v1/admin/logs", headers=auth(KEY_A)).status_code == 403
    for bad in ("?status=oops", "?limit=0", "?since=yesterday", "?after=x"):
        r = client.get(f"/v1/admin/logs{bad}", headers=auth(ADMIN))
        assert r.status_code == 400, bad


def test_bodies_when_on_are_redacted_and_capped(upstream, tmp_path, app_factory):
    config = ext_config(
        upstream,
        tmp_path,
        extensions={"audit": {"bodies": True, "max_body_bytes": 300}},
    )
    config.providers["up"].api_key = PROVIDER_SECRET
    app = app_factory(config)
    client = app.test_client()
    body = chat_body(f"my key is {PROVIDER_SECRET}", user="u1")
    body["metadata"] = {"api_key": "sk-user-field-value-123"}
    client.post("/v1/chat/completions", json=body, headers=auth(KEY_A))
    client.post(
        "/v1/chat/completions", json=chat_body("long " * 200), headers=auth(KEY_A)
    )
    long_one, first = logs(client)["data"]
    assert PROVIDER_SECRET not in first["request_body"]
    assert "sk-user-field-value-123" not in first["request_body"]
    assert "[redacted]" in first["request_body"]
    assert len(long_one["request_body"].encode()) <= 300
    assert long_one["request_body"].endswith("[truncated]")


def test_retention_prunes_records_older_than_retention_days(
    upstream, tmp_path, app_factory
):
    config = ext_config(upstream, tmp_path, extensions={"audit": {"retention_days": 1}})
    app = app_factory(config)
    ext = audit(app)
    old = {"request_id": "old", "ts": 1000.0, "status": 200, "latency_ms": 1.0}
    new = {"request_id": "new", "ts": 200_000.0, "status": 200, "latency_ms": 1.0}
    ext.store.insert([old, new])
    assert ext.prune(200_000.0 + 3600) == 1
    client = app.test_client()
    assert [d["request_id"] for d in logs(client)["data"]] == ["new"]


def test_audit_can_be_turned_off(upstream, tmp_path, app_factory):
    config = ext_config(upstream, tmp_path, extensions={"audit": {"enabled": False}})
    client = app_factory(config).test_client()
    assert client.get("/v1/admin/logs", headers=auth(ADMIN)).status_code == 404


def test_rollups_sum_a_batch_per_hour_and_day():
    rows = [
        {
            "ts": 3600.0 * 5 + 1,
            "key_name": "a",
            "model": "m",
            "provider": "p",
            "status": 200,
            "input_tokens": 2,
            "output_tokens": 3,
            "cost_nanos": 10,
            "latency_ms": 5.0,
        },
        {
            "ts": 3600.0 * 5 + 99,
            "key_name": "a",
            "model": "m",
            "provider": "p",
            "status": 502,
            "latency_ms": 7.0,
        },
    ]
    out = rollups(rows)
    assert out[(3600, 18000, "a", "m", "p")] == [2, 1, 2, 3, 10, 12.0]
    assert out[(86400, 0, "a", "m", "p")] == [2, 1, 2, 3, 10, 12.0]
    assert out[(21600, 0, "a", "m", "p")] == [2, 1, 2, 3, 10, 12.0]


@pytest.mark.parametrize("status", ["2xx", "5xx", "error", "429"])
def test_status_filters_are_accepted(status, upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path)).test_client()
    assert (
        client.get(f"/v1/admin/logs?status={status}", headers=auth(ADMIN)).status_code
        == 200
    )


def test_the_flusher_prunes_past_retention_when_it_writes(
    upstream, tmp_path, app_factory
):
    config = ext_config(upstream, tmp_path, extensions={"audit": {"retention_days": 1}})
    app = app_factory(config)
    ext = audit(app)
    ext.store.insert([{"request_id": "old", "ts": 1000.0, "latency_ms": 1.0}])
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert ext.flush()
    data = logs(client)["data"]
    assert len(data) == 1 and data[0]["request_id"] != "old"
