"""The console in a real browser: Chromium from the system packages (installed
by scripts/system-deps, launched by path) driven by Playwright, against a
real gunicorn server with the mock provider.

Skipped when Chromium or the playwright package is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import write_toml

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")

ADMIN = "admin-token-for-browser-tests-0123456789"
KEY = "sk-config-key-for-browser-0001"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def server(tmp_path, gunicorn):
    # One worker: a page flushes that worker's buffered records before reading.
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
admin_token = "{ADMIN}"

[storage]
kind = "sqlite"
path = "{tmp_path}/crabllm.db"

[providers.mock]
kind = "mock"
models = ["mock"]

[[keys]]
name = "config-key"
key = "{KEY}"

[extensions.budget]
default_budget = 10
""",
    )
    return gunicorn(config, workers=1)


@pytest.fixture
def page(browser, server) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    pg = context.new_page()
    pg.on("dialog", lambda d: d.accept())
    yield pg
    context.close()


def sign_in(page: Any, token: str) -> None:
    page.goto("/ui/")
    assert page.url.endswith("/ui/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")


def chat(url: str, key: str, text: str = "hello console") -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "mock", "messages": [{"role": "user", "content": text}]},
        timeout=10,
    )


def test_admin_creates_a_key_sees_its_requests_revokes_it_and_signs_out(page, server):
    expect = playwright_api.expect
    sign_in(page, ADMIN)
    expect(page.locator("h1")).to_have_text("Overview")

    page.click("text=Keys")
    page.fill("input[name=name]", "browser-key")
    page.fill("input[name=budget]", "2.5")
    page.click("text=Create key")
    expect(page.locator("h1")).to_contain_text("browser-key")
    secret = page.input_value("#secret")
    assert secret.startswith("sk-")
    page.click("button[data-copy]")
    expect(page.locator("button[data-copy]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    for i in range(3):
        assert chat(server.url, secret, f"request {i}").status_code == 200

    page.goto("/ui/logs?key=browser-key")
    rows = page.locator("table.log tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_contain_text("browser-key")
    expect(rows.first).to_contain_text("200")
    rows.first.locator("a").click()
    expect(page.locator("h1")).to_contain_text("Request")
    expect(page.locator("dl.kv").first).to_contain_text("mock")

    page.goto("/ui/usage?period=24h&group=key_name&metric=requests")
    expect(page.locator(".chart canvas")).to_have_count(1)
    expect(page.locator(".chart .u-legend")).to_contain_text("browser-key")
    expect(page.locator("table.totals")).to_contain_text("browser-key")

    page.goto("/ui/keys/browser-key")
    page.click("text=Revoke key")
    expect(page.locator("h1 .pill")).to_have_text("revoked")
    assert chat(server.url, secret).status_code == 401

    page.click("text=Sign out")
    expect(page.locator("input[name=token]")).to_be_visible()
    page.goto("/ui/keys")
    assert page.url.endswith("/ui/login")


def test_a_key_signs_in_to_a_read_only_view_of_its_own_usage(page, server):
    expect = playwright_api.expect
    assert chat(server.url, KEY, "mine").status_code == 200
    sign_in(page, KEY)
    assert page.url.endswith("/ui/me")
    expect(page.locator("h1")).to_contain_text("config-key")
    expect(page.locator("table.log tbody tr")).to_have_count(1)
    expect(page.locator(".card").first).to_contain_text("of $10")
    assert page.locator("form.grid").count() == 0  # nothing to change
    response = page.goto("/ui/keys")
    assert response.status == 403
    response = page.goto("/ui/logs")
    assert response.status == 403


def test_a_form_post_without_the_csrf_token_is_refused(page, server):
    sign_in(page, ADMIN)
    playwright_api.expect(page.locator("h1")).to_have_text("Overview")
    refused = page.request.post("/ui/keys", form={"name": "forged"})
    assert refused.status == 400
    assert "security token" in refused.text()
    forged = page.request.post(
        "/ui/keys", form={"name": "forged", "csrf_token": "not-the-token"}
    )
    assert forged.status == 400
    page.goto("/ui/keys")
    assert "forged" not in page.content()


def test_the_session_cookie_is_signed_httponly_samesite_and_scoped(page, server):
    sign_in(page, ADMIN)
    playwright_api.expect(page.locator("h1")).to_have_text("Overview")
    (cookie,) = page.context.cookies()
    assert cookie["name"] == "crabllm_console"
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/ui"
    assert ADMIN not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # not readable by scripts
    page.context.clear_cookies()
    page.context.add_cookies([{**cookie, "value": cookie["value"][:-4] + "AAAA"}])
    page.goto("/ui/")
    assert page.url.endswith("/ui/login")  # a tampered cookie is no session


def test_a_wrong_token_is_refused_and_nothing_secret_is_in_urls(page, server):
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    sign_in(page, "sk-not-a-real-key-000000")
    playwright_api.expect(page.locator(".alert")).to_contain_text("Incorrect")
    sign_in(page, ADMIN)
    playwright_api.expect(page.locator("h1")).to_have_text("Overview")
    assert not any(ADMIN in u or "token=" in u for u in urls)


def test_docs_page_renders_every_endpoint_from_openapi_json(page, server):
    page.goto("/docs")
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    blocks = page.locator(".opblock-summary-path")
    playwright_api.expect(blocks.first).to_be_visible()
    shown = set(blocks.all_inner_texts())
    shown = {s.replace("\u200b", "") for s in shown}
    assert set(paths) <= shown
