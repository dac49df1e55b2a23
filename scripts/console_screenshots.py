"""Screenshots of every console page for docs/console.md.

`python scripts/console_screenshots.py` seeds a sqlite file with a month of
made-up traffic (bench/console.py's generator, 60,000 requests), serves the
gateway on 127.0.0.1, signs in with Playwright driving the system Chromium
(no browser download) and writes docs/console/*.png.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.console import ADMIN, config, seed  # noqa: E402
from crabllm_sync.app import create_app  # noqa: E402

OUT = ROOT / "docs" / "console"
ROWS = 60_000
KEY_SECRET = "sk-bench-team-00-secret-000"  # bench.console's first key


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="crabllm-shots-"))
    db = tmp / "console.db"
    seed(db, ROWS)
    app = create_app(config(db))
    # One breaker open, as after a run of failures (the keys health.py keeps).
    storage = app.extensions["crabllm"].storage
    storage.set("health:azure:gpt-4o:fails", b"4")
    storage.set("health:azure:gpt-4o:until", str(time.time() + 600).encode())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        ctx = browser.new_context(base_url=url, viewport={"width": 1440, "height": 900})
        page = ctx.new_page()
        page.on("dialog", lambda d: d.accept())

        def shot(name: str, path: str, full: bool = True) -> None:
            page.goto(path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=full)
            print(f"docs/console/{name}.png", file=sys.stderr)

        shot("login", "/ui/login", full=False)
        page.fill("input[name=token]", ADMIN)
        page.click("button[type=submit]")
        shot("overview", "/ui/")
        shot("keys", "/ui/keys")
        page.fill("input[name=name]", "new-team")
        page.fill("input[name=budget]", "25")
        page.click("text=Create key")
        page.screenshot(path=str(OUT / "key-created.png"))
        shot("key", "/ui/keys/team-03")
        shot("usage", "/ui/usage?period=7d&group=model&metric=cost")
        shot("usage-by-key", "/ui/usage?period=30d&group=key_name&metric=requests")
        shot("logs", "/ui/logs?key=team-00", full=False)
        page.goto("/ui/logs?status=5xx")
        page.locator("table.log tbody tr a").first.click()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(OUT / "log-detail.png"), full_page=True)
        shot("providers", "/ui/providers")
        shot("docs", "/docs", full=False)
        page.goto("/ui/")
        page.click("text=Sign out")
        page.fill("input[name=token]", KEY_SECRET)
        page.click("button[type=submit]")
        shot("key-view", "/ui/me", full=True)
        browser.close()
    server.shutdown()
    app.extensions["crabllm"].close()


if __name__ == "__main__":
    main()
