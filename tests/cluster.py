"""Several gateway instances as several hosts would run them, on 127.0.0.1.

One redis-server and one PostgreSQL database shared by N gunicorn masters
(each with its own workers and its own working directory), one nginx
upstream in front of them, and one fake provider behind them. Used by
tests/integration/test_multihost.py and bench/scaling.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import GunicornServer, write_toml
from tests.fakes import openai as fake
from tests.servers import Nginx, PostgresServer, RedisServer
from tests.upstream import Recorded, Reply, Upstream

# nginx names the instance that answered, so a test can see the spread.
UPSTREAM_HEADER = "x-upstream-addr"


@dataclass
class Cluster:
    nginx: Nginx
    instances: list[GunicornServer]
    upstream: Upstream
    # model -> the provider's chat answer for it (default: fake.chat_handler)
    handlers: dict[str, Callable[[Recorded], Reply]]
    redis: RedisServer
    database: str

    @property
    def urls(self) -> list[str]:
        return [srv.url for srv in self.instances]

    @property
    def addresses(self) -> set[str]:
        """Every instance as nginx names it in UPSTREAM_HEADER."""
        return {f"127.0.0.1:{srv.port}" for srv in self.instances}


def provider_upstream(
    handlers: dict[str, Callable[[Recorded], Reply]],
) -> Upstream:
    """The fake OpenAI provider; chat answered per model from `handlers`,
    and any path under /bad/ failing with a 500 (a provider that is down)."""

    def chat(rec: Recorded) -> Reply:
        return handlers.get(rec.json.get("model"), fake.chat_handler)(rec)

    upstream = fake.make_upstream()
    upstream.route(r"/chat/completions$", chat)
    upstream.route(
        r"^/bad/", lambda rec: Reply(status=500, json={"error": {"message": "down"}})
    )
    return upstream.start()


@contextlib.contextmanager
def running(
    root: Path,
    postgres: PostgresServer,
    config: Callable[[Upstream, str, str], str],
    *,
    instances: int = 3,
    workers: int = 2,
    warm_key: str | None = None,
) -> Iterator[Cluster]:
    """Start the cluster; `config(upstream, redis_url, database_url)` is the
    crabllm.toml text every instance serves. With `warm_key`, each instance
    answers a few chat requests (model "m") before the cluster is handed out,
    so every worker has loaded what a first request loads."""
    redis = RedisServer()
    handlers: dict[str, Callable[[Recorded], Reply]] = {}
    upstream = provider_upstream(handlers)
    started: list[GunicornServer] = []
    nginx = None
    try:
        database = postgres.create_database(f"gw_{uuid.uuid4().hex[:8]}")
        text = config(upstream, redis.url, database)
        paths = []
        for i in range(instances):
            (root / f"host{i}").mkdir(parents=True)
            paths.append(write_toml(root / f"host{i}" / "crabllm.toml", text))
        # Started side by side, as hosts would be: every worker of every
        # instance migrates the same database and loads the same [[keys]].
        with ThreadPoolExecutor(instances) as pool:
            starts = [pool.submit(GunicornServer, p, workers) for p in paths]
            errors = []
            for f in starts:
                try:
                    started.append(f.result())
                except Exception as exc:  # noqa: BLE001 - stop the others first
                    errors.append(exc)
        if errors:
            raise errors[0]
        nginx = Nginx(
            root / "nginx",
            [srv.port for srv in started],
            f"add_header {UPSTREAM_HEADER} $upstream_addr always;",
        )
        cluster = Cluster(nginx, started, upstream, handlers, redis, database)
        if warm_key is not None:
            warm(cluster, warm_key, 4 * workers)
        yield cluster
    finally:
        if nginx is not None:
            nginx.stop()
        for srv in started:
            srv.stop()
        upstream.stop()
        redis.stop()


def chat_body(model: str, **over: Any) -> dict[str, Any]:
    """A chat request with a unique prompt (a response cache never answers it)."""
    text = f"hello {uuid.uuid4().hex[:8]}"
    return {"model": model, "messages": [{"role": "user", "content": text}], **over}


def post(url: str, key: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    """POST a chat completion on a fresh connection (nginx and the kernel
    then spread calls over instances and workers)."""
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        **kw,
    )


def burst(n: int, call: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """`n` calls at once, on `n` threads."""
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: call(), range(n)))


def warm(cluster: Cluster, key: str, per_instance: int) -> None:
    for url in cluster.urls:
        answers = burst(per_instance, lambda url=url: post(url, key, chat_body("m")))
        bad = [r for r in answers if r.status_code != 200]
        if bad:
            raise RuntimeError(f"{url} did not warm up: {bad[0].text}")


class Held:
    """An upstream handler that holds each request until `gate` opens and
    counts the requests in flight at the provider (and their peak)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.gate = threading.Event()
        self.inflight = 0
        self.peak = 0
        self.seen = 0

    def __call__(self, rec: Recorded) -> Reply:
        with self.cond:
            self.inflight += 1
            self.seen += 1
            self.peak = max(self.peak, self.inflight)
            self.cond.notify_all()
        try:
            self.gate.wait(30)
        finally:
            with self.cond:
                self.inflight -= 1
                self.cond.notify_all()
        return Reply(json=fake.completion(rec.json["model"], "held"))

    def wait(self, predicate: Callable[[Held], bool], timeout: float = 10.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), timeout)


def wait_for_count(count: Callable[[], int], n: int, timeout: float) -> bool:
    """Poll `count()` until it reaches `n`; False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count() >= n:
            return True
        time.sleep(0.02)
    return False


def usage_rows(database: str, key: str, n: int, timeout: float = 5.0) -> int:
    """Usage rows of `key` answered 200, once there are `n` (or at the timeout)."""
    import psycopg2

    deadline = time.monotonic() + timeout
    conn = psycopg2.connect(database)
    conn.autocommit = True
    try:
        while True:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM usage WHERE key_name = %s AND status = 200",
                    (key,),
                )
                rows = cur.fetchone()[0]
            if rows >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)
    finally:
        conn.close()


def children(pid: int) -> list[int]:
    """The child processes of `pid` (a gunicorn master's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]
