"""Admin API (/v1/admin/keys) and virtual keys on the request path (Flask app)."""

from __future__ import annotations

import shutil

import openai
import pytest

from tests.conftest import make_config, sdk_for_app
from tests.servers import wait_for

ADMIN = "admin-" + "t" * 40
MSG = [{"role": "user", "content": "hi"}]


def _config(tmp_path, kind: str = "sqlite", **over):
    data = {
        "admin_token": ADMIN,
        "providers": {
            "local": {"kind": "mock", "models": ["mock", "mock-large", "other"]}
        },
        "storage": {"kind": kind, "path": str(tmp_path / "gw.db")}
        if kind == "sqlite"
        else {"kind": kind},
    }
    data.update(over)
    return make_config(data)


@pytest.fixture(params=["sqlite", "memory"])
def app(request, tmp_path, app_factory):
    return app_factory(_config(tmp_path, request.param))


@pytest.fixture
def client(app):
    return app.test_client()


def _admin(**extra):
    return {"Authorization": f"Bearer {ADMIN}", **extra}


def _create(client, **body):
    r = client.post("/v1/admin/keys", json=body, headers=_admin())
    assert r.status_code == 201, r.json
    return r.json


def test_create_shows_the_secret_once_and_never_again(client):
    made = _create(client, name="team-a", models=["mock*"], budget=3)
    assert made["key"].startswith("sk-crabllm-") and made["status"] == "active"
    assert made["models"] == ["mock*"] and made["budget"] == 3
    listed = client.get("/v1/admin/keys", headers=_admin()).json
    shown = client.get("/v1/admin/keys/team-a", headers=_admin()).json
    for record in (listed["data"][0], shown):
        assert "key" not in record and "key_hash" not in record
        assert made["key"] not in str(record)
        assert record["key_prefix"] == made["key"][:14]
    assert [r["name"] for r in listed["data"]] == ["team-a"]


def test_created_key_works_with_the_sdk_and_sees_only_its_models(app, client):
    made = _create(client, name="team-a", models=["mock*"])
    sdk = sdk_for_app(app, made["key"])
    out = sdk.chat.completions.create(model="mock", messages=MSG)
    assert out.choices[0].message.content
    assert sorted(m.id for m in sdk.models.list()) == ["mock", "mock-large"]
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk.chat.completions.create(model="other", messages=MSG)
    assert info.value.body["code"] == "model_not_allowed"
    with pytest.raises(openai.AuthenticationError):
        sdk_for_app(app, "sk-crabllm-wrong").models.list()
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.json["error"]["code"] == "invalid_api_key"


def test_update_then_revoke(app, client):
    made = _create(client, name="k", models=["other"])
    sdk = sdk_for_app(app, made["key"])
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="mock", messages=MSG)
    r = client.patch(
        "/v1/admin/keys/k",
        json={
            "models": ["mock"],
            "rate_limit": {"rpm": 10},
            "expires_at": "2099-01-02T03:04:05Z",
            "metadata": {"owner": "ops"},
        },
        headers=_admin(),
    )
    assert r.status_code == 200
    rec = r.json
    assert rec["models"] == ["mock"] and rec["rate_limit"]["requests_per_minute"] == 10
    assert rec["expires_at"] == "2099-01-02T03:04:05Z"
    assert rec["metadata"] == {"owner": "ops"}
    assert sdk.chat.completions.create(model="mock", messages=MSG).choices
    r = client.delete("/v1/admin/keys/k", headers=_admin())
    assert r.status_code == 200 and r.json["status"] == "revoked"
    with pytest.raises(openai.AuthenticationError) as info:
        sdk.chat.completions.create(model="mock", messages=MSG)
    assert "revoked" in info.value.body["message"]


def test_an_expiry_in_the_past_refuses_the_key(app, client):
    made = _create(client, name="old", expires_at=1_000_000)
    assert made["status"] == "expired"
    with pytest.raises(openai.AuthenticationError):
        sdk_for_app(app, made["key"]).models.list()


def test_duplicate_is_409_and_unknown_is_404(client):
    _create(client, name="dup")
    r = client.post("/v1/admin/keys", json={"name": "dup"}, headers=_admin())
    assert r.status_code == 409 and r.json["error"]["param"] == "name"
    for method in ("get", "patch", "delete"):
        kw = {"json": {"budget": 1}} if method == "patch" else {}
        r = getattr(client, method)("/v1/admin/keys/ghost", headers=_admin(), **kw)
        assert r.status_code == 404, method
        assert set(r.json["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": 7}, "name"),
        ({"name": ""}, "name"),
        ({"name": "../etc"}, "name"),
        ({"name": "x" * 129}, "name"),
        ({"name": "a", "models": "gpt-4o"}, "models"),
        ({"name": "a", "models": []}, "models"),
        ({"name": "a", "models": [""]}, "models"),
        ({"name": "a", "models": [1]}, "models.0"),
        ({"name": "a", "rate_limit": {"requests_per_minute": 0}}, None),
        ({"name": "a", "rate_limit": {"bogus": 1}}, "rate_limit.bogus"),
        ({"name": "a", "rate_limit": 5}, "rate_limit"),
        ({"name": "a", "budget": -1}, "budget"),
        ({"name": "a", "budget": "lots"}, "budget"),
        ({"name": "a", "max_parallel_requests": 0}, "max_parallel_requests"),
        ({"name": "a", "expires_at": "tomorrow-ish"}, "expires_at"),
        ({"name": "a", "metadata": [1]}, "metadata"),
        ({"name": "a", "key": "sk-mine"}, "key"),
        ({"name": "a", "rate_limit": {"rpm": 2**40}}, "rate_limit.rpm"),
        ({"name": "a", "max_parallel_requests": 2**40}, "max_parallel_requests"),
        ({"name": "a", "models": ["m"] * 1001}, "models"),
        ({"name": "a", "models": ["m" * 300]}, "models"),
        ({"name": "a", "metadata": {"blob": "x" * 20000}}, "metadata"),
        ({"name": "a", "expires_at": [2030]}, "expires_at"),
    ],
)
def test_malformed_create_bodies_are_400_naming_the_field(client, body, param):
    r = client.post("/v1/admin/keys", json=body, headers=_admin())
    assert r.status_code == 400, r.json
    err = r.json["error"]
    assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    else:
        assert err["param"].startswith("rate_limit")


@pytest.mark.parametrize("raw", [b"", b"{not json", b"[1, 2]", b'"name"', b"null"])
def test_unparseable_bodies_are_400(client, raw):
    r = client.post(
        "/v1/admin/keys",
        data=raw,
        headers=_admin(**{"Content-Type": "application/json"}),
    )
    assert r.status_code == 400
    r = client.patch("/v1/admin/keys/x", data=raw, headers=_admin())
    assert r.status_code == 400


@pytest.mark.parametrize("name", ["admin", "Admin", "ADMIN"])
def test_the_key_name_admin_is_reserved_for_the_admin_token(client, name):
    r = client.post("/v1/admin/keys", json={"name": name}, headers=_admin())
    assert r.status_code == 400, r.json
    assert r.json["error"]["param"] == "name"
    assert "reserved for the admin token" in r.json["error"]["message"]
    assert client.get("/v1/admin/keys", headers=_admin()).json["data"] == []


def test_patch_with_unknown_field_is_400(client):
    _create(client, name="p")
    r = client.patch("/v1/admin/keys/p", json={"name": "q"}, headers=_admin())
    assert r.status_code == 400 and r.json["error"]["param"] == "name"


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/admin/keys/..", 400),
        ("/v1/admin/keys/.hidden", 400),
        ("/v1/admin/keys/" + "a" * 129, 400),
        ("/v1/admin/keys/a%00b", 400),
        ("/v1/admin/keys/%2e%2e%2f%2e%2e%2fetc", 404),
        ("/v1/admin/keys/../../etc/passwd", 404),
    ],
)
def test_path_abuse_is_refused(client, path, status):
    r = client.get(path, headers=_admin())
    assert r.status_code == status
    assert "error" in r.json


def test_admin_auth_401_and_403(client):
    made = _create(client, name="plain")
    r = client.get("/v1/admin/keys")
    assert r.status_code == 401 and r.json["error"]["code"] == "invalid_api_key"
    r = client.get("/v1/admin/keys", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = client.get("/v1/admin/keys", headers={"Authorization": f"Bearer {made['key']}"})
    assert r.status_code == 403 and r.json["error"]["type"] == "permission_error"
    r = client.post(
        "/v1/admin/keys",
        json={"name": "sneaky"},
        headers={"Authorization": f"Bearer {made['key']}"},
    )
    assert r.status_code == 403
    assert [
        k["name"] for k in client.get("/v1/admin/keys", headers=_admin()).json["data"]
    ] == ["plain"]


def test_admin_routes_are_off_without_an_admin_token(tmp_path, app_factory):
    app = app_factory(_config(tmp_path, admin_token=None))
    client = app.test_client()
    for headers in ({}, _admin()):
        r = client.get("/v1/admin/keys", headers=headers)
        assert r.status_code == 404
        r = client.post("/v1/admin/keys", json={"name": "x"}, headers=headers)
        assert r.status_code == 404


def test_auth_turns_on_when_the_first_key_is_created(client):
    body = {"model": "mock", "messages": MSG}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    made = _create(client, name="first")
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 401
    r = client.post(
        "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {made['key']}"},
    )
    assert r.status_code == 200


def test_config_keys_work_and_show_as_config(tmp_path, app_factory):
    cfg = _config(
        tmp_path, keys=[{"name": "cfg", "key": "sk-from-config-1", "models": ["mock"]}]
    )
    app = app_factory(cfg)
    client = app.test_client()
    rec = client.get("/v1/admin/keys/cfg", headers=_admin()).json
    assert rec["source"] == "config" and rec["models"] == ["mock"]
    sdk = sdk_for_app(app, "sk-from-config-1")
    assert [m.id for m in sdk.models.list()] == ["mock"]


def test_patch_on_a_config_key_is_409_naming_the_config_file(tmp_path, app_factory):
    cfg = _config(
        tmp_path, keys=[{"name": "cfg", "key": "sk-from-config-1", "models": ["mock"]}]
    )
    client = app_factory(cfg).test_client()
    r = client.patch("/v1/admin/keys/cfg", json={"models": ["*"]}, headers=_admin())
    assert r.status_code == 409, r.json
    assert r.json["error"]["code"] == "conflict"
    assert "config file" in r.json["error"]["message"]
    rec = client.get("/v1/admin/keys/cfg", headers=_admin()).json
    assert rec["models"] == ["mock"]
    # Revoking a config key is allowed: the next start keeps it revoked.
    r = client.delete("/v1/admin/keys/cfg", headers=_admin())
    assert r.status_code == 200 and r.json["status"] == "revoked"


def test_sqlite_database_gone_is_503_then_recovers(tmp_path, app_factory):
    app = app_factory(_config(tmp_path, keys=[{"name": "c", "key": "sk-config-cccc"}]))
    gw = app.extensions["crabllm"]
    client = app.test_client()
    made = _create(client, name="k")
    headers = {"Authorization": f"Bearer {made['key']}"}
    body = {"model": "mock", "messages": MSG}
    db_file = tmp_path / "gw.db"
    backup = tmp_path / "backup.db"
    gw.db.close()
    shutil.copy(db_file, backup)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"gw.db{suffix}").unlink(missing_ok=True)
    gw.auth.forget()  # as if the cache TTL had passed
    r = client.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code == 503
    assert r.json["error"]["code"] == "service_unavailable"
    assert set(r.json["error"]) == {"message", "type", "param", "code"}
    r = client.get("/v1/admin/keys", headers=_admin())
    assert r.status_code == 503
    shutil.copy(backup, db_file)
    assert (
        client.post("/v1/chat/completions", json=body, headers=headers).status_code
        == 200
    )


def test_postgres_keys_and_outage_is_503_then_recovers(tmp_path, app_factory, postgres):
    url = postgres.create_database("admin_outage")
    app = app_factory(
        _config(
            tmp_path,
            storage={
                "kind": "sqlite",
                "path": str(tmp_path / "kv.db"),
                "database": url,
            },
        )
    )
    gw = app.extensions["crabllm"]
    client = app.test_client()
    made = _create(client, name="pg")
    headers = {"Authorization": f"Bearer {made['key']}"}
    body = {"model": "mock", "messages": MSG}
    assert (
        client.post("/v1/chat/completions", json=body, headers=headers).status_code
        == 200
    )
    postgres.stop()
    try:
        gw.auth.forget()
        r = client.post("/v1/chat/completions", json=body, headers=headers)
        assert r.status_code == 503 and r.json["error"]["code"] == "service_unavailable"
    finally:
        postgres.start()

    def ok() -> bool:
        gw.auth.forget()
        r = client.post("/v1/chat/completions", json=body, headers=headers)
        return r.status_code == 200

    wait_for(ok, timeout=30, what="gateway recovery after postgres restart")


def test_gateway_started_while_postgres_is_down_heals(tmp_path, app_factory, postgres):
    url = postgres.create_database("boot_outage")
    storage = {"kind": "sqlite", "path": str(tmp_path / "kv.db"), "database": url}
    cfg = _config(
        tmp_path,
        storage=storage,
        keys=[{"name": "cfg", "key": "sk-config-boot", "models": ["mock"]}],
    )
    postgres.stop()
    try:
        app = app_factory(cfg)  # starts anyway: the error is logged, not raised
        client = app.test_client()
        headers = {"Authorization": "Bearer sk-config-boot"}
        r = client.get("/v1/models", headers=headers)
        assert r.status_code == 503 and r.json["error"]["code"] == "service_unavailable"
    finally:
        postgres.start()

    def ok() -> bool:
        app.extensions["crabllm"].auth.forget()
        return client.get("/v1/models", headers=headers).status_code == 200

    wait_for(ok, timeout=30, what="config keys loaded after postgres came back")
    rec = client.get("/v1/admin/keys/cfg", headers=_admin()).json
    assert rec["source"] == "config"


def test_memory_keys_refuse_the_admin_api_when_several_processes_serve(
    tmp_path, app_factory
):
    client = app_factory(_config(tmp_path, "memory")).test_client()
    several = {"wsgi.multiprocess": True}  # what gunicorn sets with workers > 1
    for method, path in (
        ("post", "/v1/admin/keys"),
        ("get", "/v1/admin/keys"),
        ("delete", "/v1/admin/keys/x"),
    ):
        r = getattr(client, method)(
            path, json={"name": "x"}, headers=_admin(), environ_overrides=several
        )
        assert r.status_code == 409, (method, r.json)
        assert "memory storage" in r.json["error"]["message"]
    # Without the admin token it is still a 401, not a hint about storage.
    r = client.get("/v1/admin/keys", environ_overrides=several)
    assert r.status_code == 401
    # sqlite keys are shared: the same request is served.
    sql = app_factory(_config(tmp_path, "sqlite")).test_client()
    r = sql.post(
        "/v1/admin/keys",
        json={"name": "x"},
        headers=_admin(),
        environ_overrides=several,
    )
    assert r.status_code == 201
