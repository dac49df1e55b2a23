"""Three gateway instances, one truth.

Three gunicorn masters (two gevent workers each, as three hosts would run
them) behind one nginx upstream, sharing one redis-server (counters, leases,
breakers, cache, stored Responses) and one PostgreSQL (keys, usage). Every
limit is proven across the instances with exact figures; the last test kills
one instance outright and shows its leases expire.
"""

from __future__ import annotations

import math
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from crabllm_sync.extensions.rate_limit import WINDOW
from tests import cluster as hosts
from tests.cluster import (
    UPSTREAM_HEADER,
    Cluster,
    Held,
    burst,
    chat_body,
    children,
    post,
    usage_rows,
    wait_for_count,
)
from tests.fakes import openai as fake
from tests.servers import NGINX, Unavailable, wait_for
from tests.upstream import Recorded, Reply, Upstream

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

ADMIN = "sk-admin-multihost-0001"
RPM_KEY = "sk-multihost-rpm-0001"
TPM_KEY = "sk-multihost-tpm-0001"
BUDGET_KEY = "sk-multihost-budget-01"
PAR_KEY = "sk-multihost-par-00001"
PLAIN_KEY = "sk-multihost-plain-001"

INSTANCES = 3
WORKERS = 2
RPM = 10
PARALLEL = 3
LEASE_SECONDS = 4.0
# TPM: a request with max_tokens 1000 reserves 1000 plus its prompt's
# estimate (a few tokens), so exactly 10 fit under 10,500 and an 11th does not.
TPM_MAX_TOKENS = 1000
TPM = 10_500
# Budget: $0.01 a token; the fake answers max_tokens completion tokens, so a
# request costs about what it reserved (57 tokens, $0.57).
PRICE_PER_MILLION = 10_000.0
BUDGET_MAX_TOKENS = 50
BUDGET = 5.0


def priced_answer(rec: Recorded) -> Reply:
    """Answers the most the request allowed, after a pause, so reservations
    of requests on different instances overlap."""
    time.sleep(0.2)
    body = rec.json
    return Reply(
        json=fake.completion(
            body["model"], "paid", completion_tokens=body["max_tokens"]
        )
    )


def _config(upstream: Upstream, redis_url: str, database: str) -> str:
    return f"""
admin_token = "{ADMIN}"

[storage]
kind = "redis"
path = "{redis_url}"
database = "{database}"

[routing]
failure_threshold = 2
cooldown_seconds = 60

[extensions.rate_limit]
lease_seconds = {LEASE_SECONDS}

[extensions.cache]
ttl = 300

[extensions.usage]
flush_interval = 0.2

[providers.up]
kind = "openai"
base_url = "{upstream.url}/v1"
models = ["m", "hold", "tpm", "priced", "cached"]
max_retries = 0
timeout = 20

[providers.bad]
kind = "openai"
base_url = "{upstream.url}/bad/v1"
models = ["brk"]
weight = 1
max_retries = 0

[providers.good]
kind = "openai"
base_url = "{upstream.url}/v1"
models = ["brk"]
weight = 0
max_retries = 0

[providers.compat]
kind = "vllm"
base_url = "{upstream.url}/v1"
models = ["bridge"]
max_retries = 0

[pricing.priced]
prompt_cost_per_million = {PRICE_PER_MILLION}
completion_cost_per_million = {PRICE_PER_MILLION}

[[keys]]
name = "rpm"
key = "{RPM_KEY}"
rate_limit = {{ requests_per_minute = {RPM} }}

[[keys]]
name = "tpm"
key = "{TPM_KEY}"
rate_limit = {{ tokens_per_minute = {TPM} }}

[[keys]]
name = "budget"
key = "{BUDGET_KEY}"
budget = {BUDGET}

[[keys]]
name = "par"
key = "{PAR_KEY}"
max_parallel_requests = {PARALLEL}

[[keys]]
name = "plain"
key = "{PLAIN_KEY}"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("multihost")
    try:
        with hosts.running(
            root,
            postgres,
            _config,
            instances=INSTANCES,
            workers=WORKERS,
            warm_key=PLAIN_KEY,
        ) as running:
            yield running
    except Unavailable as exc:
        pytest.skip(str(exc))


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def spread(responses: list[httpx.Response]) -> set[str]:
    return {r.headers.get(UPSTREAM_HEADER, "") for r in responses}


def clear_of_window_edge(burst_seconds: float = 5.0) -> None:
    """Start a rate-limit burst at least `burst_seconds` before the minute
    window turns: the sliding window weighs the last window down as the new
    one passes, so a burst slower than 60/limit seconds across the turn may
    rightly admit one more. Waits at most `burst_seconds`."""
    left = WINDOW - math.fmod(time.time(), WINDOW)
    if left < burst_seconds:
        time.sleep(left + 0.05)


def test_rpm_admits_exactly_the_limit_across_instances(cluster):
    clear_of_window_edge()
    answers = burst(4 * RPM, lambda: post(cluster.nginx.url, RPM_KEY, chat_body("m")))
    codes = Counter(r.status_code for r in answers)
    assert codes == {200: RPM, 429: 3 * RPM}, codes
    assert spread(answers) == cluster.addresses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert refused.headers["x-ratelimit-limit-requests"] == str(RPM)


def test_tpm_admits_exactly_the_limit_across_instances(cluster):
    clear_of_window_edge()
    held = cluster.handlers["tpm"] = Held()
    answers: list[httpx.Response] = []

    def call() -> httpx.Response:
        r = post(
            cluster.nginx.url, TPM_KEY, chat_body("tpm", max_tokens=TPM_MAX_TOKENS)
        )
        answers.append(r)
        return r

    with ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(call) for _ in range(40)]
        # Every admitted request is held at the provider, so no settlement
        # frees tokens while the burst is being decided.
        decided = wait_for_count(lambda: len(answers), 30, timeout=15)
        at_provider = held.inflight
        held.gate.set()
        results = [f.result() for f in futures]
    assert decided and at_provider == 10, (len(answers), at_provider)
    codes = Counter(r.status_code for r in results)
    assert codes == {200: 10, 429: 30}, codes
    assert held.peak == 10
    assert spread(results) == cluster.addresses
    refused = next(r for r in results if r.status_code == 429)
    assert "tokens per minute" in refused.json()["error"]["message"]


def test_budget_spend_stays_within_one_reservation(cluster):
    cluster.handlers["priced"] = priced_answer
    body = lambda: chat_body("priced", max_tokens=BUDGET_MAX_TOKENS)  # noqa: E731
    first = burst(30, lambda: post(cluster.nginx.url, BUDGET_KEY, body()))
    codes = Counter(r.status_code for r in first)
    assert codes[200] >= 1 and codes[429] >= 1, codes
    assert spread(first) == cluster.addresses
    # Then one at a time, round the instances, until the budget refuses.
    admitted = codes[200]
    refusal = None
    for i in range(20):
        r = post(cluster.urls[i % INSTANCES], BUDGET_KEY, body())
        if r.status_code == 429:
            refusal = r
            break
        assert r.status_code == 200, r.text
        admitted += 1
    assert (
        refusal is not None and refusal.json()["error"]["code"] == "insufficient_quota"
    )
    message = refusal.json()["error"]["message"]
    reservation = float(message.split("may cost up to $")[1].split(" ")[0])
    # Every instance reads the same standing.
    standings = [
        httpx.get(f"{url}/v1/budget", headers=auth(BUDGET_KEY), timeout=10).json()
        for url in cluster.urls
    ]
    spent = {s["data"][0]["spent_nanos"] for s in standings}
    assert len(spent) == 1, standings
    spent_usd = spent.pop() / 1e9
    cost = 57 * PRICE_PER_MILLION / 1e6  # 7 prompt + 50 completion tokens
    assert spent_usd == pytest.approx(admitted * cost)
    assert spent_usd <= BUDGET + reservation
    # Refused only when one more reservation would not fit.
    assert spent_usd + reservation > BUDGET
    # The ledger in PostgreSQL holds every admitted request once.
    rows = usage_rows(cluster.database, "budget", admitted)
    assert rows == admitted


def test_parallel_leases_hold_across_instances(cluster):
    held = cluster.handlers["hold"] = Held()
    with ThreadPoolExecutor(12) as pool:
        futures = [
            pool.submit(post, cluster.nginx.url, PAR_KEY, chat_body("hold"))
            for _ in range(12)
        ]
        refused = wait_for_count(
            lambda: sum(f.done() for f in futures), 12 - PARALLEL, timeout=15
        )
        at_provider = held.inflight
        held.gate.set()
        results = [f.result() for f in futures]
    assert refused and at_provider == PARALLEL, at_provider
    codes = Counter(r.status_code for r in results)
    assert codes == {200: PARALLEL, 429: 12 - PARALLEL}, codes
    assert held.peak == PARALLEL
    assert spread(results) == cluster.addresses
    # Every slot came back: the next PARALLEL requests all pass.
    again = burst(PARALLEL, lambda: post(cluster.nginx.url, PAR_KEY, chat_body("m")))
    assert [r.status_code for r in again] == [200] * PARALLEL


def test_a_key_made_on_one_instance_works_and_dies_on_every_instance(cluster):
    a, *others = cluster.urls
    name = f"k-{uuid.uuid4().hex[:6]}"
    made = httpx.post(
        f"{a}/v1/admin/keys", json={"name": name}, headers=auth(ADMIN), timeout=10
    )
    assert made.status_code == 201, made.text
    secret = made.json()["key"]
    for url in others:
        wait_for(
            lambda url=url: post(url, secret, chat_body("m")).status_code == 200,
            timeout=5,
            what=f"the new key on {url}",
        )
    gone = httpx.delete(f"{others[0]}/v1/admin/keys/{name}", headers=auth(ADMIN))
    assert gone.status_code == 200 and gone.json()["status"] == "revoked", gone.text
    revoked_at = time.monotonic()
    # No request sent 5 s or more after the revocation is admitted, and every
    # instance comes to refuse it ten times running (fresh connections, so
    # both workers of each are asked). The bound is on when a request was
    # sent, not on how long this loop takes on a loaded machine.
    give_up = revoked_at + 30.0
    for url in cluster.urls:
        run = 0
        while run < 10:
            sent = time.monotonic()
            assert sent < give_up, f"{url} never refused it ten times running"
            r = post(url, secret, chat_body("m"))
            if r.status_code == 401:
                run += 1
                continue
            run = 0
            assert sent - revoked_at < 5.0, (
                f"{url} admitted it {sent - revoked_at:.1f} s after"
            )
        assert "revoked" in r.json()["error"]["message"]


def test_a_breaker_opened_by_one_instance_is_honoured_by_the_others(cluster):
    a, *others = cluster.urls

    def bad_calls() -> int:
        return sum(rec.path.startswith("/bad/") for rec in cluster.upstream.requests)

    # Two requests on one instance: each fails on `bad` and falls back to `good`.
    for _ in range(2):
        assert post(a, PLAIN_KEY, chat_body("brk")).status_code == 200
    assert bad_calls() == 2
    state = httpx.get(f"{others[0]}/health?detail=1", headers=auth(ADMIN)).json()
    assert any(
        d["provider"] == "bad" and d["state"] == "open" for d in state["deployments"]
    ), state
    # The other instances skip `bad` outright: no request reaches it.
    for i in range(12):
        assert post(others[i % 2], PLAIN_KEY, chat_body("brk")).status_code == 200
    assert bad_calls() == 2


def test_the_response_cache_answers_from_any_instance(cluster):
    body = chat_body("cached")
    before = len(cluster.upstream.requests)
    first = post(cluster.urls[0], PLAIN_KEY, body)
    assert first.status_code == 200
    assert first.headers.get("x-crabllm-cache") != "hit"
    for url in cluster.urls[1:]:
        r = post(url, PLAIN_KEY, body)
        assert r.status_code == 200 and r.headers["x-crabllm-cache"] == "hit"
        assert r.json()["choices"] == first.json()["choices"]
    assert len(cluster.upstream.requests) == before + 1


def test_a_stored_response_is_read_from_any_instance(cluster):
    a, b, c = cluster.urls
    made = httpx.post(
        f"{a}/v1/responses",
        json={"model": "bridge", "input": "remember the colour teal", "store": True},
        headers=auth(PLAIN_KEY),
        timeout=20,
    )
    assert made.status_code == 200, made.text
    rid = made.json()["id"]
    # Stored Responses may be written behind the answer: poll, bounded.
    for url in (b, c):
        wait_for(
            lambda url=url: (
                httpx.get(
                    f"{url}/v1/responses/{rid}", headers=auth(PLAIN_KEY), timeout=10
                ).status_code
                == 200
            ),
            timeout=5,
            what=f"response {rid} on {url}",
        )
        got = httpx.get(f"{url}/v1/responses/{rid}", headers=auth(PLAIN_KEY)).json()
        assert got["id"] == rid and got["output"] == made.json()["output"]
    # A follow-up on another instance continues the conversation.
    follow = httpx.post(
        f"{c}/v1/responses",
        json={"model": "bridge", "input": "and now?", "previous_response_id": rid},
        headers=auth(PLAIN_KEY),
        timeout=20,
    )
    assert follow.status_code == 200, follow.text
    sent = cluster.upstream.requests[-1].json["messages"]
    assert any("teal" in str(m.get("content")) for m in sent), sent


def test_a_killed_instances_leases_expire(cluster):
    """Last: it kills an instance (SIGKILL to its master and workers)."""
    victim = cluster.instances[-1]
    held = cluster.handlers["hold"] = Held()
    try:
        with ThreadPoolExecutor(PARALLEL) as pool:
            futures = [
                pool.submit(post, victim.url, PAR_KEY, chat_body("hold"))
                for _ in range(PARALLEL)
            ]
            assert held.wait(lambda h: h.inflight == PARALLEL)
            for pid in [*children(victim.proc.pid), victim.proc.pid]:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            victim.proc.wait(5)
            for f in futures:
                with pytest.raises(httpx.HTTPError):
                    f.result()
        # The dead instance's slots are still taken: the others refuse ...
        survivor = cluster.urls[0]
        r = post(survivor, PAR_KEY, chat_body("m"))
        assert r.status_code == 429 and "parallel" in r.json()["error"]["message"]
        # ... until its leases expire (lease_seconds after they were taken).
        while (
            r := post(cluster.nginx.url, PAR_KEY, chat_body("m"))
        ).status_code == 429:
            assert time.monotonic() - killed_at < LEASE_SECONDS + 3
            time.sleep(0.1)
        assert r.status_code == 200, r.text
        freed_after = time.monotonic() - killed_at
        assert freed_after <= LEASE_SECONDS + 3
        again = burst(
            PARALLEL, lambda: post(cluster.nginx.url, PAR_KEY, chat_body("m"))
        )
        assert [x.status_code for x in again] == [200] * PARALLEL
    finally:
        held.gate.set()
