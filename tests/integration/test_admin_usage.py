"""GET /v1/admin/usage: every key's usage, for the admin token only."""

from __future__ import annotations

from tests.extensions_support import ADMIN, KEY_A, KEY_B, auth, chat_body, ext_config


def test_admin_usage_lists_every_keys_rows_with_the_usage_filters(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_B))
    client.post(
        "/v1/embeddings", json={"model": "e", "input": "z"}, headers=auth(KEY_B)
    )
    r = client.get("/v1/admin/usage", headers=auth(ADMIN))
    assert r.status_code == 200, r.json
    rows = r.json["data"]
    assert sorted((x["key"], x["model"]) for x in rows) == [
        ("team-a", "m"),
        ("team-b", "e"),
        ("team-b", "m"),
    ]
    # The same rows /v1/usage answers the admin.
    assert rows == client.get("/v1/usage", headers=auth(ADMIN)).json["data"]
    r = client.get("/v1/admin/usage?key=team-b&model=e", headers=auth(ADMIN))
    assert [(x["key"], x["model"]) for x in r.json["data"]] == [("team-b", "e")]
    assert (
        client.get("/v1/admin/usage?limit=1", headers=auth(ADMIN)).json["data"]
        == rows[:1]
    )
    bad = client.get("/v1/admin/usage?to=tomorrow", headers=auth(ADMIN))
    assert bad.status_code == 400 and bad.json["error"]["param"] == "to"


def test_admin_usage_refuses_a_virtual_key_and_no_token(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    assert client.get("/v1/admin/usage", headers=auth(KEY_A)).status_code in (401, 403)
    assert client.get("/v1/admin/usage").status_code == 401


def test_admin_usage_is_off_without_an_admin_token(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path, admin_token=None))
    r = app.test_client().get("/v1/admin/usage", headers=auth(KEY_A))
    assert r.status_code == 404
