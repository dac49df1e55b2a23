"""Providers at run time through /v1/admin/providers, in-process."""

from __future__ import annotations

import logging
import time

import pytest

from crabllm_sync.catalog.live import POLL_INTERVAL
from tests.conftest import make_config
from tests.extensions_support import ADMIN, KEY_A, auth, chat_body

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
