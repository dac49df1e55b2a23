"""Keys against real gunicorn gevent servers: CLI create, admin revoke, restarts."""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import httpx
import openai
import pytest
from click.testing import CliRunner

from crabllm_sync.cli import main
from crabllm_sync.db import Database
from tests.conftest import write_toml
from tests.servers import RedisServer, Unavailable

ADMIN = "admin-" + "s" * 40
# Each request carries x-seq; the access log says which worker answered it.
ACCESS_LOG = (
    '--access-logfile - --access-logformat "seq=%({x-seq}i)s pid=%(p)s status=%(s)s"'
)


def _config(tmp_path: Path, storage: str) -> Path:
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
admin_token = "{ADMIN}"

[storage]
{storage}

[providers.local]
kind = "mock"
models = ["mock"]

[[keys]]
name = "ops"
key = "sk-config-ops-key"
""",
    )


def _cli(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.stdout


def _status(url: str, secret: str, seq: int = 0) -> int:
    """GET /v1/models on a fresh connection, so gunicorn's workers share the load."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Authorization": f"Bearer {secret}", "x-seq": str(seq)}
    try:
        conn.request("GET", "/v1/models", headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


class Workers:
    """Requests to a server started with ACCESS_LOG, told apart by worker."""

    def __init__(self, server, count: int) -> None:  # noqa: ANN001
        self.server, self.count, self.seq = server, count, 0

    def answer(self, secret: str) -> tuple[int, str]:
        """(status, pid of the worker that answered) of one fresh request."""
        self.seq += 1
        status = _status(self.server.url, secret, self.seq)
        line = re.compile(rf"seq={self.seq} pid=(\S+) status=")
        deadline = time.monotonic() + 10  # the log line follows the answer
        while not (found := line.search(self.server.log())):
            assert time.monotonic() < deadline, f"no log line for seq={self.seq}"
            time.sleep(0.01)
        return status, found.group(1)

    def until_each_answered(
        self, secret: str, status: int, timeout: float = 60.0
    ) -> None:
        """Request until every worker has answered `status` at least once.

        `timeout` only ends a wait that would never end: how soon is not
        what this checks.
        """
        seen: set[str] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self.count:
            if time.monotonic() > deadline:
                pytest.fail(f"{len(seen)} of {self.count} workers answered {status}")
            got, pid = self.answer(secret)
            if got == status:
                seen.add(pid)


def _chat(url: str, secret: str) -> str:
    client = openai.OpenAI(api_key=secret, base_url=f"{url}/v1", max_retries=0)
    out = client.chat.completions.create(
        model="mock", messages=[{"role": "user", "content": "hello"}]
    )
    client.close()
    return out.choices[0].message.content or ""


def _revoke(url: str, name: str) -> None:
    r = httpx.delete(
        f"{url}/v1/admin/keys/{name}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["status"] == "revoked"


def _usage_row(request_id: str, key: str) -> dict:
    return {
        "request_id": request_id,
        "ts": time.time(),
        "key_name": key,
        "model": "mock",
        "endpoint": "chat",
        "input_tokens": 11,
        "output_tokens": 4,
        "cost_nanos": 2_000_000,
    }


def test_cli_key_works_at_once_and_admin_revocation_reaches_every_worker(
    tmp_path, gunicorn
):
    config = _config(tmp_path, f'kind = "sqlite"\npath = "{tmp_path / "gw.db"}"')
    server = gunicorn(config, workers=4, env={"GUNICORN_CMD_ARGS": ACCESS_LOG})
    workers = Workers(server, 4)

    secret = _cli(config, "keys", "create", "team-a", "--models", "mock").strip()
    # At once, on whichever worker takes each fresh connection.
    assert [_status(server.url, secret) for _ in range(24)] == [200] * 24
    assert _chat(server.url, secret) == "Mock reply: hello"
    # Every worker holds the key in its cache before the revocation.
    workers.until_each_answered(secret, 200)

    _revoke(server.url, "team-a")
    # How soon is the design's bound (CACHE_TTL, on a controlled clock in
    # tests/unit/test_auth.py); here: every worker lets go of its copy, and
    # once a worker has refused the key it never takes it again.
    workers.until_each_answered(secret, 401)
    assert [_status(server.url, secret) for _ in range(24)] == [401] * 24
    assert _status(server.url, "sk-config-ops-key") == 200


def _survives_restart(tmp_path: Path, gunicorn, config: Path, db_url: str, restart):
    server = gunicorn(config, workers=2)
    made = httpx.post(
        f"{server.url}/v1/admin/keys",
        json={"name": "durable", "models": ["mock"], "budget": 4},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    ).json()
    secret = made["key"]
    gone = _cli(config, "keys", "create", "gone").strip()
    _revoke(server.url, "gone")
    assert _chat(server.url, secret) == "Mock reply: hello"
    db = Database(db_url)
    db.insert_usage([_usage_row("u1", "durable"), _usage_row("u2", "durable")])
    db.close()

    server.stop()
    restart()
    again = gunicorn(config, workers=2)

    assert _chat(again.url, secret) == "Mock reply: hello"
    assert _status(again.url, gone) == 401
    assert _status(again.url, "sk-config-ops-key") == 200
    shown = httpx.get(
        f"{again.url}/v1/admin/keys/durable",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    ).json()
    assert shown["budget"] == 4 and shown["status"] == "active"
    # Stopping flushes the usage buffer: the two real chats (4 prompt and 3
    # completion tokens each, "mock" is free) join the two rows written above.
    again.stop()
    usage = _cli(config, "usage", "--key", "durable").splitlines()
    assert usage[1].split() == ["durable", "mock", "4", "30", "14", "0.004000"]


def test_keys_and_usage_survive_a_restart_with_sqlite(tmp_path, gunicorn):
    path = tmp_path / "gw.db"
    config = _config(tmp_path, f'kind = "sqlite"\npath = "{path}"')
    _survives_restart(tmp_path, gunicorn, config, f"sqlite:///{path}", lambda: None)


def test_keys_and_usage_survive_a_restart_with_redis(tmp_path, gunicorn):
    try:
        redis_server = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        db_url = f"sqlite:///{tmp_path / 'keys.db'}"
        config = _config(
            tmp_path,
            f'kind = "redis"\npath = "{redis_server.url}"\ndatabase = "{db_url}"',
        )

        def restart_redis() -> None:
            redis_server.stop()  # no persistence: redis comes back empty
            redis_server.start()

        _survives_restart(tmp_path, gunicorn, config, db_url, restart_redis)
    finally:
        redis_server.stop()


def test_auth_off_is_logged_and_the_first_key_turns_it_on_everywhere(
    tmp_path, gunicorn
):
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
admin_token = "{ADMIN}"

[storage]
kind = "sqlite"
path = "{tmp_path / "gw.db"}"

[providers.local]
kind = "mock"
models = ["mock"]
""",
    )
    server = gunicorn(config, workers=2, env={"GUNICORN_CMD_ARGS": ACCESS_LOG})
    workers = Workers(server, 2)
    assert "AUTH IS OFF" in server.log()
    workers.until_each_answered("anything", 200)  # each worker knows: no keys

    made = httpx.post(
        f"{server.url}/v1/admin/keys",
        json={"name": "first"},
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    ).json()
    workers.until_each_answered("anything", 401)
    assert [_status(server.url, "anything") for _ in range(16)] == [401] * 16
    assert [_status(server.url, made["key"]) for _ in range(16)] == [200] * 16
    # The request path only reads: the record is as the admin API left it.
    shown = _cli(config, "keys", "show", "first", "--json")
    assert '"updated_at": "' + made["created_at"] in shown


def test_admin_keys_with_memory_storage_and_two_workers_is_409_naming_the_fix(
    tmp_path, gunicorn
):
    srv = gunicorn(_config(tmp_path, 'kind = "memory"'), workers=2)
    headers = {"Authorization": f"Bearer {ADMIN}"}
    r = httpx.post(
        f"{srv.url}/v1/admin/keys", json={"name": "t"}, headers=headers, timeout=10
    )
    assert r.status_code == 409, r.text
    message = r.json()["error"]["message"]
    assert 'kind = "sqlite"' in message and "--workers 1" in message
    r = httpx.delete(f"{srv.url}/v1/admin/keys/ops", headers=headers, timeout=10)
    assert r.status_code == 409
    assert _status(srv.url, "sk-config-ops-key") == 200  # config keys still work
