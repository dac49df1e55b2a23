"""Providers at run time on a real 2-worker gunicorn: every worker serves a
provider added through the admin API within 5 s, with no restart."""

from __future__ import annotations

import http.client
import re
import time

import httpx
import openai

from tests.conftest import write_toml

ADMIN = "admin-" + "p" * 40
KEY = "sk-config-ops-key"
WORKERS = 2
SERVED_WITHIN = 5.0  # seconds: the promise of docs/admin.md
# Each request carries x-seq; the access log says which worker answered it.
ACCESS_LOG = (
    '--access-logfile - --access-logformat "seq=%({x-seq}i)s pid=%(p)s status=%(s)s"'
)


def _config(tmp_path):
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
admin_token = "{ADMIN}"

[storage]
kind = "sqlite"
path = "{tmp_path / "gw.db"}"

[providers.local]
kind = "mock"
models = ["mock"]

[[keys]]
name = "ops"
key = "{KEY}"
""",
    )


class Workers:
    def __init__(self, server) -> None:  # noqa: ANN001
        self.server, self.seq = server, 0

    def model_status(self, model: str) -> tuple[int, str]:
        """(status of GET /v1/models/MODEL, pid of the worker) on a fresh connection."""
        self.seq += 1
        host, _, port = self.server.url.removeprefix("http://").partition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        headers = {"Authorization": f"Bearer {KEY}", "x-seq": str(self.seq)}
        try:
            conn.request("GET", f"/v1/models/{model}", headers=headers)
            status = conn.getresponse().status
        finally:
            conn.close()
        line = re.compile(rf"seq={self.seq} pid=(\S+) status=")
        deadline = time.monotonic() + 10  # the log line follows the answer
        while not (found := line.search(self.server.log())):
            assert time.monotonic() < deadline, f"no log line for seq={self.seq}"
            time.sleep(0.01)
        return status, found.group(1)

    def until_each(self, model: str, status: int, within: float) -> None:
        seen: set[str] = set()
        deadline = time.monotonic() + within
        while len(seen) < WORKERS:
            assert time.monotonic() < deadline, (
                f"{len(seen)} of {WORKERS} workers answered {status} within {within} s"
            )
            got, pid = self.model_status(model)
            if got == status:
                seen.add(pid)
            else:
                seen.discard(pid)  # once served, a worker must keep serving


def _admin(method: str, url: str, body=None) -> httpx.Response:
    return httpx.request(
        method,
        url,
        json=body,
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )


def test_an_added_provider_is_served_by_every_worker_within_5_s(
    tmp_path, gunicorn, upstream
):
    server = gunicorn(
        _config(tmp_path), workers=WORKERS, env={"GUNICORN_CMD_ARGS": ACCESS_LOG}
    )
    workers = Workers(server)
    workers.until_each("added", 404, within=60)  # both workers up, neither has it

    r = _admin(
        "POST",
        f"{server.url}/v1/admin/providers",
        {
            "name": "live",
            "kind": "openai",
            "base_url": f"{upstream.url}/v1",
            "api_key": "sk-live-secret-0123456789abcdef",
            "models": ["added"],
            "max_retries": 0,
        },
    )
    assert r.status_code == 201, r.text
    workers.until_each("added", 200, within=SERVED_WITHIN)

    client = openai.OpenAI(api_key=KEY, base_url=f"{server.url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model="added", messages=[{"role": "user", "content": "hi"}]
    )
    client.close()
    assert out.choices[0].message.content
    assert upstream.requests[-1].headers["authorization"].endswith("abcdef")

    # A bad change is refused and every worker keeps serving what it had.
    bad = _admin("PATCH", f"{server.url}/v1/admin/providers/live", {"weight": -1})
    assert bad.status_code == 400
    workers.until_each("added", 200, within=SERVED_WITHIN)

    assert _admin("DELETE", f"{server.url}/v1/admin/providers/live").status_code == 200
    workers.until_each("added", 404, within=SERVED_WITHIN)
