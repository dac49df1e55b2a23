"""Secrets never leak: marker-valued keys, every error path, grep everything seen.

A real gunicorn gevent server is configured with a provider api_key, virtual
keys (config and admin-created) and an admin token, all carrying distinctive
markers. Every error path we can reach is forced; then every response body and
header, /metrics, /health, and the whole server log (JSON and text request
lines, DEBUG level, gunicorn's access log) are searched for the markers.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import httpx
import pytest

from tests.conftest import write_toml
from tests.fakes import anthropic as ant_fake
from tests.fakes import openai as fake
from tests.servers import RedisServer, Unavailable
from tests.upstream import Recorded, Reply, Upstream

# The markers: each secret carries one, after the characters shown as its
# display prefix (so a legitimate "key_prefix" never contains a marker).
# Provider keys as long as issued ones (an sk-proj- key is 164 characters),
# so a message cut to length before redaction would show a piece of one.
PROVIDER_KEY = "sk-proj-PROVSECRETMARK-" + "7f3a9c1e5b2d4f6a8c0e" * 7 + "0"
ANTHROPIC_KEY = "sk-ant-api03-ANTSECRETMARK-" + "0c9b8a7f6e5d4c3b2a19" * 4 + "AA"
CONFIG_KEY = "sk-config-key-CFGSECRETMARK-2b4d6f8a0c1e3a5c7e9b"
LIMITED_KEY = "sk-limited-ke-LIMSECRETMARK-9e8d7c6b5a493827160f"
BROKE_KEY = "sk-brokenkey0-BRKSECRETMARK-0a1b2c3d4e5f60718293"
ADMIN_TOKEN = "admin-token-00-ADMSECRETMARK-5e6f7a8b9c0d1e2f3a4b"
MARKERS = ["PROVSECRETMARK", "CFGSECRETMARK", "LIMSECRETMARK", "BRKSECRETMARK"]
MARKERS += ["ADMSECRETMARK", "ANTSECRETMARK"]


def _echo_auth(status: int):
    """A careless provider: its error message repeats the credentials it got."""

    def handler(rec: Recorded) -> Reply:
        sent = rec.headers.get("authorization", "")
        return Reply(
            status=status,
            json={
                "error": {
                    "message": f"Incorrect API key provided: {sent}",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                }
            },
        )

    return handler


def _config(up: Upstream, ant: Upstream, redis_url: str, json_logs: bool) -> str:
    return f"""
admin_token = "{ADMIN_TOKEN}"
max_body_size = 65536

[providers.ant]
kind = "anthropic"
base_url = "{ant.url}/v1"
api_key = "{ANTHROPIC_KEY}"
models = ["claude-x"]
max_retries = 1  # retries log the provider's error text: it must be redacted
timeout = 3  # the hang cases wait this; normal answers need far less

[storage]
kind = "redis"
path = "{redis_url}"

[providers.up]
kind = "openai"
base_url = "{up.url}/v1"
api_key = "{PROVIDER_KEY}"
models = ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"]
max_retries = 1  # retries log the provider's error text: it must be redacted
timeout = 3  # the hang cases wait this; normal answers need far less

[pricing.gpt-4o]
prompt_cost_per_million = 1000000.0
completion_cost_per_million = 1000000.0

[[keys]]
name = "team"
key = "{CONFIG_KEY}"
models = ["gpt-4o", "text-embedding-3-small", "claude-x"]

[[keys]]
name = "limited"
key = "{LIMITED_KEY}"
rate_limit = {{ requests_per_minute = 1 }}

[[keys]]
name = "broke"
key = "{BROKE_KEY}"
budget = 5.0  # gpt-4o at $1 a token: 2 reserved fit, the 10 used do not

[routing]
failure_threshold = 1000

[extensions.usage]
flush_interval = 0.1

[extensions.logging]
level = "debug"
json = {"true" if json_logs else "false"}
"""


class Capture:
    """Every response seen: status line, headers and body, as text."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.client = httpx.Client(base_url=base, timeout=20)
        self.seen: list[str] = []
        self.statuses: list[tuple[str, int]] = []

    def keep(self, what: str, r: httpx.Response) -> httpx.Response:
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.seen.append(f"## {what} -> {r.status_code}\n{headers}\n\n{r.text}")
        self.statuses.append((what, r.status_code))
        return r

    def call(
        self, what: str, method: str, path: str, secret: str | None = None, **kw
    ) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        r = self.client.request(method, path, headers=headers, **kw)
        return self.keep(what, r)

    def chat(self, what: str, secret: str | None, model="gpt-4o", **body):
        payload = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        payload.update(body)
        return self.call(what, "POST", "/v1/chat/completions", secret, json=payload)


def _force_every_error(
    cap: Capture, up: Upstream, ant: Upstream, redis: RedisServer
) -> dict:
    """Drive each error path; returns what the assertions need."""
    out: dict = {}
    # -- an Anthropic provider repeating its key: error answer, native error event
    said = f"invalid x-api-key {ANTHROPIC_KEY}"
    ant.enqueue(
        Reply(
            status=401,
            json={
                "type": "error",
                "error": {"type": "authentication_error", "message": said},
            },
        )
    )
    messages = {
        "model": "claude-x",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
    }
    r = cap.call(
        "anthropic 401 echoing the key",
        "POST",
        "/v1/messages",
        headers={"x-api-key": CONFIG_KEY, "anthropic-version": "2023-06-01"},
        json=messages,
    )
    assert r.status_code >= 400
    error_event = (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": said}},
    )
    # Translated to chat, the error is the first chunk: retried once.
    for path, body, tries in [
        ("/v1/messages", {**messages, "stream": True}, 1),
        ("/v1/chat/completions", {**messages, "stream": True}, 2),
    ]:
        first = ant_fake.events(ant_fake.text("hey"), "claude-x")[0]
        ant.enqueue(*[Reply(events=[first, error_event])] * tries)
        r = cap.call(
            f"anthropic error event echoing the key via {path}",
            "POST",
            path,
            CONFIG_KEY,
            json=body,
            headers={"anthropic-version": "2023-06-01"},
        )
        assert "error" in r.text
    # -- authentication and authorisation -------------------------------------
    assert cap.chat("no key", None).status_code == 401
    bad = CONFIG_KEY[:-1] + "X"
    assert cap.chat("bad key (marker inside)", bad).status_code == 401
    assert (
        cap.call(
            "bad key via x-api-key",
            "POST",
            "/v1/messages",
            headers={"x-api-key": bad, "anthropic-version": "2023-06-01"},
            json={
                "model": "gpt-4o",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ).status_code
        == 401
    )
    assert (
        cap.call(
            "basic auth",
            "GET",
            "/v1/models",
            headers={"Authorization": f"Basic {CONFIG_KEY}"},
        ).status_code
        == 401
    )
    wrong_admin = ADMIN_TOKEN[:-1] + "X"
    assert (
        cap.call("wrong admin token", "GET", "/v1/admin/keys", wrong_admin).status_code
        == 401
    )
    assert (
        cap.call("plain key on admin", "GET", "/v1/admin/keys", CONFIG_KEY).status_code
        == 403
    )
    assert (
        cap.chat("model not allowed", CONFIG_KEY, model="gpt-4o-mini").status_code
        == 403
    )
    assert cap.chat("unknown model", CONFIG_KEY, model="nope").status_code == 404
    # -- admin: create, list, show, bad bodies --------------------------------
    created = cap.client.post(
        "/v1/admin/keys",
        json={"name": "made", "models": ["gpt-4o"]},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )  # the one answer that legitimately holds a secret: not kept
    assert created.status_code == 201
    made = created.json()["key"]
    out["made"] = made
    assert (
        cap.call("admin list", "GET", "/v1/admin/keys", ADMIN_TOKEN).status_code == 200
    )
    assert (
        cap.call("admin show", "GET", "/v1/admin/keys/made", ADMIN_TOKEN).status_code
        == 200
    )
    assert (
        cap.call(
            "admin show config key", "GET", "/v1/admin/keys/team", ADMIN_TOKEN
        ).status_code
        == 200
    )
    assert (
        cap.call(
            "admin duplicate",
            "POST",
            "/v1/admin/keys",
            ADMIN_TOKEN,
            json={"name": "made"},
        ).status_code
        == 409
    )
    assert (
        cap.call(
            "admin bad body",
            "POST",
            "/v1/admin/keys",
            ADMIN_TOKEN,
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        ).status_code
        == 400
    )
    assert (
        cap.call(
            "admin key with chosen secret",
            "POST",
            "/v1/admin/keys",
            ADMIN_TOKEN,
            json={"name": "x", "key": CONFIG_KEY},
        ).status_code
        == 400
    )
    assert cap.call(
        "admin traversal", "GET", "/v1/admin/keys/..%2f..%2fetc", ADMIN_TOKEN
    ).status_code in (400, 404)
    assert (
        cap.call(
            "admin patch bad",
            "PATCH",
            "/v1/admin/keys/made",
            ADMIN_TOKEN,
            json={"budget": "lots"},
        ).status_code
        == 400
    )
    assert cap.chat("admin-made key works", made).status_code == 200
    assert (
        cap.chat("admin-made key, other model", made, model="gpt-4o-mini").status_code
        == 403
    )
    # -- malformed bodies -----------------------------------------------------
    for what, content in [
        ("invalid json", b'{"model": "gpt-4o", "messages": ['),
        ("wrong types", b'{"model": 5, "messages": "x"}'),
        ("invalid utf-8", b'{"model": "\xff\xfe", "messages": []}'),
        ("no messages", b'{"model": "gpt-4o"}'),
    ]:
        r = cap.call(
            what,
            "POST",
            "/v1/chat/completions",
            CONFIG_KEY,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400, (what, r.text)
    r = cap.call(
        "too large",
        "POST",
        "/v1/chat/completions",
        CONFIG_KEY,
        content=b"x" * 70_000,  # over max_body_size; small enough not to break a pipe
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    # -- upstream failures (each echoes or breaks) ----------------------------
    for status in (401, 403, 500):
        tries = 2 if status == 500 else 1  # a 500 is retried once
        up.enqueue(*[_echo_auth(status)(_fake_rec(up))] * tries)
        r = cap.chat(f"upstream {status} echoing the key", CONFIG_KEY)
        assert r.status_code >= 500 or r.status_code in (401, 403), r.text
        up.enqueue(*[_echo_auth(status)(_fake_rec(up))] * tries)
        r = cap.chat(
            f"stream: upstream {status} echoing the key", CONFIG_KEY, stream=True
        )
        assert r.status_code >= 400
    garbage = Reply(status=200, body=b"<html>oops</html>", content_type="text/html")
    up.enqueue(garbage, garbage)  # a 502 of the provider's: retried once
    assert cap.chat("upstream garbage", CONFIG_KEY).status_code == 502
    truncated = Reply(
        status=200, body=b'{"id": "x", "choices": [', content_type="application/json"
    )
    up.enqueue(truncated, truncated)
    assert cap.chat("upstream truncated json", CONFIG_KEY).status_code == 502
    hang = threading.Event()
    up.enqueue(Reply(hang=hang))
    assert cap.chat("upstream hangs", CONFIG_KEY).status_code == 504
    hang.set()
    events = fake.stream_events("gpt-4o", ["a", "b", "c"])
    up.enqueue(Reply(events=events, drop_after=2))
    r = cap.chat("stream reset mid-way", CONFIG_KEY, stream=True)
    assert r.status_code == 200 and '"error"' in r.text
    echo = {"error": {"message": f"key Bearer {PROVIDER_KEY} was revoked"}}
    up.enqueue(Reply(events=[events[0], echo]))
    r = cap.chat(
        "stream: provider error event echoing the key", CONFIG_KEY, stream=True
    )
    assert '"error"' in r.text
    up.enqueue(Reply(events=[events[0], b"data: {not json\n\n"]))
    r = cap.chat("stream garbage event", CONFIG_KEY, stream=True)
    assert '"error"' in r.text
    reset = Reply(
        chunks=[b'{"id": "x", '], drop_after=1, content_type="application/json"
    )
    up.enqueue(reset, reset)
    assert cap.chat("upstream reset before body end", CONFIG_KEY).status_code == 502
    # -- limits and budget ----------------------------------------------------
    assert cap.chat("rate limit: first", LIMITED_KEY).status_code == 200
    assert cap.chat("rate limit: second", LIMITED_KEY).status_code == 429
    assert cap.chat("budget: first", BROKE_KEY, max_tokens=1).status_code == 200
    out["broke"] = cap.chat("budget: spent", BROKE_KEY).status_code
    # -- storage down -----------------------------------------------------------
    redis.stop()
    try:
        r = cap.chat("storage down: rate-limited key", LIMITED_KEY)
        assert r.status_code == 503, r.text
        r = cap.chat("storage down: budget key", BROKE_KEY)
        assert r.status_code == 503, r.text
        cap.call("storage down: health detail", "GET", "/health?detail=1", ADMIN_TOKEN)
    finally:
        redis.start()
    # -- the read-out endpoints -------------------------------------------------
    for what, path, secret in [
        ("health", "/health", None),
        ("health detail", "/health?detail=1", ADMIN_TOKEN),
        ("health detail, plain key", "/health?detail=1", CONFIG_KEY),
        ("metrics", "/metrics", None),
        ("metrics with admin", "/metrics", ADMIN_TOKEN),
        ("usage admin", "/v1/usage", ADMIN_TOKEN),
        ("usage key", "/v1/usage", CONFIG_KEY),
        ("budget", "/v1/budget", BROKE_KEY),
        ("models", "/v1/models", CONFIG_KEY),
        ("openapi", "/openapi.json", None),
        ("unknown path", "/v1/nothing", CONFIG_KEY),
    ]:
        cap.call(what, "GET", path, secret)
    assert (
        cap.call("revoke", "DELETE", "/v1/admin/keys/made", ADMIN_TOKEN).status_code
        == 200
    )
    out["revoked"] = cap.chat("revoked key", made).status_code
    return out


def _fake_rec(up: Upstream) -> Recorded:
    """The request a careless provider would echo: our real provider key."""
    return Recorded("POST", "/", {}, {"authorization": f"Bearer {PROVIDER_KEY}"}, b"")


def _needles(made: str) -> list[str]:
    # The admin-made key's random part, past the characters shown as its prefix.
    return [*MARKERS, made[len("sk-crabllm-") + 3 :]]


def _find(needles: list[str], text: str) -> list[str]:
    found = []
    for n in needles:
        at = text.find(n)
        if at >= 0:
            found.append(f"{n!r} in ...{text[max(0, at - 200) : at + 60]!r}")
    return found


@pytest.mark.parametrize("json_logs", [True, False], ids=["json-log", "text-log"])
def test_no_secret_in_any_answer_log_metric_or_health(tmp_path, gunicorn, json_logs):
    try:
        redis = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    up = fake.make_upstream().start()
    ant = ant_fake.make_upstream().start()
    try:
        config = _config(up, ant, redis.url, json_logs)
        path = write_toml(tmp_path / "crabllm.toml", config)
        srv = gunicorn(
            path,
            workers=1,
            env={"GUNICORN_CMD_ARGS": "--log-level debug --access-logfile -"},
        )
        cap = Capture(srv.url)
        out = _force_every_error(cap, up, ant, redis)
        cap.client.close()  # no idle connection for the worker to wait out
        srv.stop()
        log = srv.log_path.read_text(errors="replace")
        # The markers were live: the provider key really went upstream.
        assert any(
            r.headers.get("authorization") == f"Bearer {PROVIDER_KEY}"
            for r in up.requests
        )
        assert any(r.headers.get("x-api-key") == ANTHROPIC_KEY for r in ant.requests)
        assert out["broke"] == 429 and out["revoked"] == 401
        assert '"event":"request"' in log if json_logs else "event=request" in log
        needles = _needles(out["made"])
        leaks = _find(needles, "\n".join(cap.seen)) + _find(needles, log)
        assert not leaks, "\n".join(leaks)
        # Stored hashed: no secret in the database file or in redis, and the
        # stored digest is the secret's SHA-256.
        db = tmp_path / "crabllm.db"
        assert not _find(needles, db.read_bytes().decode("latin-1"))
        con = sqlite3.connect(db)
        rows = dict(con.execute("SELECT name, key_hash FROM api_keys").fetchall())
        con.close()
        assert rows["made"] == hashlib.sha256(out["made"].encode()).hexdigest()
        assert rows["team"] == hashlib.sha256(CONFIG_KEY.encode()).hexdigest()
        assert not _find(needles, _redis_dump(redis))
        print(f"secrets: {len(cap.seen)} answers and {len(log)} log bytes, 0 leaks")
    finally:
        up.stop()
        ant.stop()
        redis.stop()


def _redis_dump(redis: RedisServer) -> str:
    import redis as redis_lib

    r = redis_lib.Redis.from_url(redis.url)
    parts = []
    for key in r.scan_iter():
        parts.append(repr(key))
        kind = r.type(key)
        if kind == b"string":
            parts.append(repr(r.get(key)))
        elif kind == b"hash":
            parts.append(repr(r.hgetall(key)))
        elif kind == b"zset":
            parts.append(repr(r.zrange(key, 0, -1)))
        elif kind == b"list":
            parts.append(repr(r.lrange(key, 0, -1)))
        elif kind == b"set":
            parts.append(repr(r.smembers(key)))
    r.close()
    return "\n".join(parts)
