"""Limits, budgets, usage, cache and metrics on real gunicorn gevent servers.

Two workers (and, with redis, two gateway processes) must behave as one
gateway. Each test runs with sqlite storage and with a real redis-server.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crabllm_sync.db import Database
from crabllm_sync.extensions.rate_limit import WINDOW, window_index
from tests.conftest import write_toml
from tests.extensions_support import ADMIN, KEY_A, KEY_B, auth, chat_body, cost
from tests.servers import RedisServer, Unavailable

ONE = cost(7, 3)  # one non-streamed answer of the fake upstream: 13000 nanos


@pytest.fixture
def redis_server():
    try:
        srv = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield srv
    srv.stop()


@pytest.fixture(params=["sqlite", "redis"])
def storage(request, tmp_path) -> dict[str, str]:
    """The [storage] section and the usage database URL for one backend."""
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        return {
            "toml": f'[storage]\nkind = "sqlite"\npath = "{path}"\n',
            "db": f"sqlite:///{path}",
        }
    srv = request.getfixturevalue("redis_server")
    usage = tmp_path / "usage.db"
    return {
        "toml": (
            f'[storage]\nkind = "redis"\npath = "{srv.url}"\n'
            f'database = "sqlite:///{usage}"\n'
        ),
        "db": f"sqlite:///{usage}",
        "redis": srv,
    }


def write_config(
    tmp_path: Path,
    upstream,
    storage: dict,
    *,
    key_a: str = "",
    extra: str = "",
    flush_interval: float = 0.1,
    name: str = "crabllm.toml",
) -> Path:
    text = f"""
admin_token = "{ADMIN}"

[providers.up]
kind = "openai"
base_url = "{upstream.url}/v1"
api_key = "sk-upstream"
models = ["m", "e"]
max_retries = 0
timeout = 20

[[keys]]
name = "team-a"
key = "{KEY_A}"
{key_a}

[[keys]]
name = "team-b"
key = "{KEY_B}"

[pricing.m]
prompt_cost_per_million = 1.0
completion_cost_per_million = 2.0

[pricing.e]
prompt_cost_per_million = 1.0

[extensions.usage]
flush_interval = {flush_interval}

{extra}

{storage["toml"]}
"""
    return write_toml(tmp_path / name, text)


def burst(limit: int, n: int, send) -> list[int]:  # noqa: ANN001
    """Statuses of `n` (> 2 * limit) parallel requests of a key limited to
    `limit` a minute, checked against what the sliding window guarantees
    wherever the burst falls: within one fixed window exactly `limit` pass;
    across a minute edge the previous window still weighs (1 - e/60) at e s
    into the next, so up to limit * e/60 more may (e: when the burst ended).
    """
    began = time.time()
    statuses = parallel(send, n)
    first, _ = window_index(began)
    last, elapsed = window_index(time.time())
    assert last - first <= 1, "the burst took over a minute"
    spill = math.floor(limit * elapsed / WINDOW) if last > first else 0
    passed = statuses.count(200)
    assert limit <= passed <= limit + spill, (statuses, spill)
    assert passed + statuses.count(429) == n, statuses
    return statuses


def parallel(fn, n: int, workers: int = 16) -> list:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, range(n)))


def post_chat(url: str, key: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body or chat_body(),
        headers=auth(key),
        timeout=30,
    )


def wait_for(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def usage_rows(url: str, key: str = ADMIN) -> list[dict]:
    r = httpx.get(f"{url}/v1/usage", headers=auth(key), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def metric_sum(url: str, sample: str) -> float:
    text = httpx.get(f"{url}/metrics", headers=auth(ADMIN), timeout=10).text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == sample
    )


def per_request_costs(db_url: str) -> tuple[int, int]:
    db = Database(db_url)
    try:
        with db.db.connection_context():
            rows = list(db.m.UsageRecord.select())
        return len(rows), sum(r.cost_nanos for r in rows)
    finally:
        db.close()


# -- rate limits ----------------------------------------------------------------


def test_rpm_limit_lets_exactly_n_through_across_workers(
    gunicorn, upstream, tmp_path, storage
):
    cfg = write_config(
        tmp_path, upstream, storage, key_a="rate_limit = { requests_per_minute = 10 }"
    )
    srv = gunicorn(cfg, workers=2)
    statuses = burst(10, 30, lambda _: post_chat(srv.url, KEY_A).status_code)
    assert len(upstream.requests) == statuses.count(200)
    # The other key is not limited by team-a's traffic.
    assert post_chat(srv.url, KEY_B).status_code == 200


def test_max_parallel_requests_across_workers(gunicorn, upstream, tmp_path, storage):
    import threading

    from tests.fakes import openai as fake
    from tests.upstream import Reply

    gate = threading.Event()
    upstream.enqueue(
        *[Reply(json=fake.completion("m", "held"), hang=gate) for _ in range(3)]
    )
    cfg = write_config(tmp_path, upstream, storage, key_a="max_parallel_requests = 3")
    srv = gunicorn(cfg, workers=2)
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(post_chat, srv.url, KEY_A) for _ in range(3)]
        upstream.wait_for_requests(3, timeout=30)
        refused = parallel(lambda _: post_chat(srv.url, KEY_A).status_code, 6)
        gate.set()
        assert [f.result().status_code for f in held] == [200, 200, 200]
    assert refused == [429] * 6
    assert post_chat(srv.url, KEY_A).status_code == 200  # every slot came back


# -- usage, budget, metrics: one reconciliation ------------------------------------


def test_mixed_run_usage_budget_and_metrics_agree_across_workers(
    gunicorn, upstream, tmp_path, storage
):
    cfg = write_config(
        tmp_path,
        upstream,
        storage,
        extra="[extensions.budget]\ndefault_budget = 100.0\n",
    )
    srv = gunicorn(cfg, workers=2)
    sdk = openai.OpenAI(api_key=KEY_A, base_url=f"{srv.url}/v1", max_retries=0)

    def one(i: int) -> None:
        kind = i % 5
        if kind in (0, 1):  # non-stream: 7 + 3
            sdk.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        elif kind == 2:  # stream, usage stripped for the client: 7 + 4
            chunks = list(
                sdk.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "a b c"}],
                    stream=True,
                )
            )
            assert all(c.usage is None for c in chunks)
        elif kind == 3:  # stream with include_usage: 7 + 3
            chunks = list(
                sdk.chat.completions.create(
                    model="m",
                    messages=[{"role": "user", "content": "a b"}],
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )
            assert chunks[-1].usage.completion_tokens == 3
        else:  # embeddings: 8
            sdk.embeddings.create(model="e", input=["p", "q"])

    with sdk:  # closes its keep-alive connections, so shutdown is quick
        parallel(one, 30, workers=10)
    # 12 non-streams, 6 + 6 streams, 6 embeddings: hand-counted from the fake.
    prompt = 12 * 7 + 6 * 7 + 6 * 7 + 6 * 8
    completion = 12 * 3 + 6 * 4 + 6 * 3
    expected = cost(prompt, completion)

    rows = wait_for(
        lambda: (
            (r := usage_rows(srv.url)) and sum(x["requests"] for x in r) == 30 and r
        ),
        what="every worker's usage records",
    )
    assert sum(x["prompt_tokens"] for x in rows) == prompt
    assert sum(x["completion_tokens"] for x in rows) == completion
    assert sum(x["cost_nanos"] for x in rows) == expected
    assert {x["key"] for x in rows} == {"team-a"}
    count, per_request = per_request_costs(storage["db"])
    assert (count, per_request) == (30, expected)
    budget = httpx.get(f"{srv.url}/v1/budget", headers=auth(KEY_A), timeout=10)
    assert budget.json()["data"][0]["spent_nanos"] == expected
    assert metric_sum(srv.url, "crabllm_cost_nanos_total") == expected
    assert metric_sum(srv.url, "crabllm_requests_total") == 30
    assert metric_sum(srv.url, "crabllm_active_streams") == 0
    assert metric_sum(srv.url, "crabllm_request_duration_seconds_count") == 30


def test_budget_hammered_by_50_parallel_requests(gunicorn, upstream, tmp_path, storage):
    budget_nanos = 10 * ONE + ONE // 2
    cfg = write_config(
        tmp_path,
        upstream,
        storage,
        extra=f"[extensions.budget]\ndefault_budget = {budget_nanos / 1e9!r}\n",
    )
    srv = gunicorn(cfg, workers=2)
    # 28 chars reserve 7 input tokens (the fake counts 7), max_tokens 3 the 3
    # completion tokens: each reservation is exactly its request's cost. A
    # request is admitted only while spent + reserved <= budget, so however
    # the two workers interleave, exactly floor(10.5) = 10 are admitted.
    body = chat_body("hello" * 5 + "abc", max_tokens=3)
    statuses = parallel(lambda _: post_chat(srv.url, KEY_A, body), 50, workers=50)
    codes = [r.status_code for r in statuses]
    assert codes.count(200) == 10
    assert codes.count(429) == 40
    assert all(
        r.json()["error"]["code"] == "insufficient_quota"
        for r in statuses
        if r.status_code == 429
    )
    spent = httpx.get(f"{srv.url}/v1/budget", headers=auth(KEY_A), timeout=10)
    assert spent.json()["data"][0]["spent_nanos"] == 10 * ONE


# -- cache -------------------------------------------------------------------------


def test_cache_is_shared_by_workers_and_bypassed_on_no_cache(
    gunicorn, upstream, tmp_path, storage
):
    cfg = write_config(tmp_path, upstream, storage, extra="[extensions.cache]\n")
    srv = gunicorn(cfg, workers=2)
    first = post_chat(srv.url, KEY_A, chat_body("cached?"))
    hits = [post_chat(srv.url, KEY_A, chat_body("cached?")) for _ in range(8)]
    assert "x-crabllm-cache" not in first.headers
    assert all(h.headers.get("x-crabllm-cache") == "hit" for h in hits)
    assert all(h.json() == first.json() for h in hits)
    assert len(upstream.requests) == 1
    bypass = httpx.post(
        f"{srv.url}/v1/chat/completions",
        json=chat_body("cached?"),
        headers={**auth(KEY_A), "Cache-Control": "no-cache"},
        timeout=30,
    )
    assert "x-crabllm-cache" not in bypass.headers
    assert len(upstream.requests) == 2
    other_key = post_chat(srv.url, KEY_B, chat_body("cached?"))
    assert "x-crabllm-cache" not in other_key.headers
    cleared = httpx.delete(f"{srv.url}/v1/cache", headers=auth(ADMIN), timeout=10)
    assert cleared.status_code == 200 and cleared.json()["deleted"] == 2
    assert (
        "x-crabllm-cache" not in post_chat(srv.url, KEY_A, chat_body("cached?")).headers
    )


# -- shutdown ----------------------------------------------------------------------


def test_graceful_shutdown_writes_buffered_usage(gunicorn, upstream, tmp_path, storage):
    cfg = write_config(tmp_path, upstream, storage, flush_interval=600)
    srv = gunicorn(cfg, workers=2)
    parallel(lambda _: post_chat(srv.url, KEY_A).status_code, 12)
    srv.stop()  # SIGTERM: each worker's exit hook writes its buffer
    assert per_request_costs(storage["db"]) == (12, 12 * ONE)
    # One log line per request, by key name, never the key.
    log = srv.log_path.read_text(errors="replace")
    lines = [ln for ln in log.splitlines() if "event=request" in ln]
    assert len(lines) == 12
    assert all("key=team-a" in ln and "status=200" in ln for ln in lines)
    assert KEY_A not in log


# -- redis: several gateway processes, outages ----------------------------------------


def test_two_gateways_on_redis_behave_as_one(
    gunicorn, upstream, tmp_path, redis_server
):
    usage = tmp_path / "usage.db"
    storage = {
        "toml": (
            f'[storage]\nkind = "redis"\npath = "{redis_server.url}"\n'
            f'database = "sqlite:///{usage}"\n'
        )
    }
    key_a = "rate_limit = { requests_per_minute = 12 }"
    one = gunicorn(
        write_config(
            tmp_path, upstream, storage, key_a=key_a, extra="[extensions.cache]\n"
        ),
        workers=2,
    )
    two = gunicorn(
        write_config(
            tmp_path,
            upstream,
            storage,
            key_a=key_a,
            extra="[extensions.cache]\n",
            name="second.toml",
        ),
        workers=1,
    )
    urls = [one.url, two.url]
    burst(
        12, 30, lambda i: post_chat(urls[i % 2], KEY_A, chat_body(f"q{i}")).status_code
    )
    # An answer cached through one gateway is a hit on the other.
    post_chat(one.url, KEY_B, chat_body("shared?"))
    hit = post_chat(two.url, KEY_B, chat_body("shared?"))
    assert hit.headers.get("x-crabllm-cache") == "hit"


def test_redis_outage_fails_limited_keys_closed_and_heals(
    gunicorn, upstream, tmp_path, redis_server
):
    usage = tmp_path / "usage.db"
    storage = {
        "toml": (
            f'[storage]\nkind = "redis"\npath = "{redis_server.url}"\n'
            f'database = "sqlite:///{usage}"\n'
        ),
        "db": f"sqlite:///{usage}",
    }
    cfg = write_config(
        tmp_path,
        upstream,
        storage,
        key_a="rate_limit = { requests_per_minute = 1000 }",
        extra="[extensions.cache]\n",
    )
    srv = gunicorn(cfg, workers=2)
    assert post_chat(srv.url, KEY_A).status_code == 200
    redis_server.stop()
    down = post_chat(srv.url, KEY_A, chat_body("during"))
    assert down.status_code == 503
    assert down.json()["error"]["code"] == "service_unavailable"
    # No limits on team-b; the cache fails open: answered by the upstream.
    assert post_chat(srv.url, KEY_B, chat_body("during")).status_code == 200
    redis_server.start()
    wait_for(
        lambda: post_chat(srv.url, KEY_A, chat_body("after")).status_code == 200,
        what="the gateway to use redis again",
    )
    # Usage lives in SQL, not redis: every answered request was recorded.
    count, _ = wait_for(
        lambda: (c := per_request_costs(storage["db"]))[0] >= 4 and c,
        what="usage records",
    )
    assert count >= 4
