"""Console pages through Flask's test client: what a key may see, CSV
export, the console off without an admin token, memory storage."""

from __future__ import annotations

import re

from tests.conftest import make_config
from tests.extensions_support import ADMIN, KEY_A, KEY_B, auth, chat_body, ext_config


def sign_in(client, token: str) -> None:
    page = client.get("/ui/login").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/ui/login", data={"token": token, "csrf_token": csrf})
    assert r.status_code == 302, r.text


def traffic(app) -> None:
    client = app.test_client()
    for key in (KEY_A, KEY_B):
        r = client.post("/v1/chat/completions", json=chat_body(), headers=auth(key))
        assert r.status_code == 200


def test_a_key_exports_and_opens_only_its_own_records(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    traffic(app)
    admin = app.test_client()
    sign_in(admin, ADMIN)
    ids = [int(i) for i in re.findall(r'/ui/logs/(\d+)"', admin.get("/ui/logs").text)]
    assert len(ids) == 2
    csv_all = admin.get("/ui/usage.csv?period=24h").text
    assert "team-a" in csv_all and "team-b" in csv_all

    key = app.test_client()
    sign_in(key, KEY_A)
    own = re.findall(r'/ui/logs/(\d+)"', key.get("/ui/me").text)
    assert len(own) == 1
    other = next(i for i in ids if str(i) not in own)
    assert key.get(f"/ui/logs/{own[0]}").status_code == 200
    assert key.get(f"/ui/logs/{other}").status_code == 404
    csv_own = key.get("/ui/usage.csv?period=24h").text
    assert "team-a" in csv_own and "team-b" not in csv_own
    for page in ("/ui/logs", "/ui/keys", "/ui/usage", "/ui/providers"):
        assert key.get(page).status_code == 403, page


def test_a_revoked_key_is_signed_out_of_the_console(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path))
    admin = app.test_client()
    sign_in(admin, ADMIN)
    page = admin.get("/ui/keys").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    created = admin.post("/ui/keys", data={"name": "temp", "csrf_token": csrf})
    secret = re.search(r'id="secret" readonly value="([^"]+)"', created.text).group(1)
    assert created.headers["Cache-Control"] == "no-store"
    key = app.test_client()
    sign_in(key, secret)
    assert key.get("/ui/me").status_code == 200
    admin.post("/ui/keys/temp/revoke", data={"csrf_token": csrf})
    r = key.get("/ui/me")
    assert r.status_code == 302 and r.headers["Location"].endswith("/ui/login")


def test_the_console_is_off_without_an_admin_token(upstream, tmp_path, app_factory):
    client = app_factory(ext_config(upstream, tmp_path, admin_token=None)).test_client()
    r = client.get("/ui/login")
    assert r.status_code == 404 and "admin_token" in r.text


def test_memory_storage_has_no_request_log_but_a_console(app_factory):
    config = make_config(
        {
            "admin_token": ADMIN,
            "providers": {"mock": {"kind": "mock", "models": ["mock"]}},
        }
    )
    client = app_factory(config).test_client()
    sign_in(client, ADMIN)
    assert "request log is off" in client.get("/ui/").text
    assert client.get("/ui/providers").status_code == 200
    r = client.get("/ui/logs")
    assert r.status_code == 404 and "request log is off" in r.text
