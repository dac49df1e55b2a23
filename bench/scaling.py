"""What one request costs the shared parts of a several-host deployment.

`python -m bench.scaling` starts the cluster of tests/cluster.py (one
redis-server, one PostgreSQL, N gunicorn instances behind one nginx, a fake
provider), sends each workload's requests through nginx, and prints per
request: redis commands (INFO commandstats deltas), PostgreSQL transactions,
sessions and inserted rows (pg_stat_database, pg_stat_user_tables deltas),
redis connections, and the CPU of the gateway processes. docs/scaling.md
quotes its output.

Everything listens on 127.0.0.1; the run is bounded (requests x workloads,
a 30 s timeout per request, 15 s for the statistics to settle).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.procs import cpu_seconds, descendants
from tests.cluster import Cluster, chat_body, post, running
from tests.servers import PostgresServer
from tests.upstream import Upstream

# Commands only the counter script runs inside redis (one EVALSHA round trip).
IN_SCRIPT = frozenset({"exists", "incrby", "pexpire"})
LIMITED = "sk-scaling-limited-0001"
PLAIN = "sk-scaling-plain-00001"


def config(upstream: Upstream, redis_url: str, database: str) -> str:
    """A production-shaped config: every shared feature on."""
    return f"""
[storage]
kind = "redis"
path = "{redis_url}"
database = "{database}"

[extensions.cache]
ttl = 300

[extensions.usage]

[providers.up]
kind = "openai"
base_url = "{upstream.url}/v1"
models = ["m"]
max_retries = 0

[providers.compat]
kind = "vllm"
base_url = "{upstream.url}/v1"
models = ["bridge"]
max_retries = 0

[pricing.m]
prompt_cost_per_million = 1.0
completion_cost_per_million = 2.0

[pricing.bridge]
prompt_cost_per_million = 1.0
completion_cost_per_million = 2.0

[[keys]]
name = "limited"
key = "{LIMITED}"
rate_limit = {{ requests_per_minute = 1000000, tokens_per_minute = 1000000000 }}
budget = 1000000
max_parallel_requests = 1000

[[keys]]
name = "plain"
key = "{PLAIN}"
"""


def _responses(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/responses",
        json={"model": "bridge", "input": "hello", "store": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


CACHED = chat_body("m")
# name -> (what it is, one request through `url`)
WORKLOADS: dict[str, tuple[str, Callable[[str], httpx.Response]]] = {
    "plain": (
        "chat, key without limits, cache miss",
        lambda url: post(url, PLAIN, chat_body("m")),
    ),
    "limited": (
        "chat, key with RPM + TPM + budget + max_parallel, cache miss",
        lambda url: post(url, LIMITED, chat_body("m")),
    ),
    "cache-hit": (
        "chat, key with every limit, answered from the cache",
        lambda url: post(url, LIMITED, CACHED),
    ),
    "stream": (
        "chat stream, key with every limit",
        lambda url: post(url, LIMITED, chat_body("m", stream=True)),
    ),
    "responses": (
        "Responses API, store: true (bridged), key with every limit",
        lambda url: _responses(url, LIMITED),
    ),
}


# -- statistics -------------------------------------------------------------


def redis_commands(cluster: Cluster) -> Counter[str]:
    import redis

    with redis.Redis.from_url(cluster.redis.url) as r:
        stats = r.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()})


def redis_connections(cluster: Cluster) -> tuple[int, int]:
    """(connections received so far, clients connected now)."""
    import redis

    with redis.Redis.from_url(cluster.redis.url) as r:
        info = r.info()
    return int(info["total_connections_received"]), int(info["connected_clients"])


def _pg(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def pg_database(postgres: PostgresServer, name: str) -> Counter[str]:
    """The database's counters, read from another database (so reading them
    is not counted in them)."""
    other = f"postgresql://gw@127.0.0.1:{postgres.port}/postgres"
    (row,) = _pg(
        other,
        "SELECT xact_commit, xact_rollback, sessions, tup_inserted, tup_updated, "
        f"tup_deleted FROM pg_stat_database WHERE datname = '{name}'",
    )
    keys = (
        "xact_commit",
        "xact_rollback",
        "sessions",
        "inserted",
        "updated",
        "deleted",
    )
    return Counter(dict(zip(keys, row, strict=True)))


def pg_tables(database: str) -> Counter[str]:
    rows = _pg(database, "SELECT relname, n_tup_ins FROM pg_stat_user_tables")
    return Counter({f"{name} rows": ins for name, ins in rows})


def settled(read: Callable[[], Counter[str]], limit: float = 15.0) -> Counter[str]:
    """Read until three reads 0.5 s apart agree: the usage and request-log
    flushers (1 s) have written, and the server has published its counters."""
    last, same = read(), 0
    deadline = time.monotonic() + limit
    while same < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
        now = read()
        same = same + 1 if now == last else 0
        last = now
    return last


# -- one workload -------------------------------------------------------------


def measure(
    cluster: Cluster,
    postgres: PostgresServer,
    call: Callable[[str], httpx.Response],
    n: int,
    concurrency: int,
) -> dict[str, Any]:
    name = cluster.database.rsplit("/", 1)[1]
    pids = [p for srv in cluster.instances for p in descendants(srv.proc.pid)]
    tables0 = pg_tables(cluster.database)
    db0 = settled(lambda: pg_database(postgres, name))
    cmds0 = redis_commands(cluster)
    conns0, _ = redis_connections(cluster)
    cpu0 = cpu_seconds(pids)
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        codes = Counter(
            r.status_code for r in pool.map(lambda _: call(cluster.nginx.url), range(n))
        )
    elapsed = time.monotonic() - started
    cpu = cpu_seconds(pids) - cpu0
    cmds = redis_commands(cluster) - cmds0
    cmds["info"] -= 1  # the read after the run
    conns1, clients = redis_connections(cluster)
    db = settled(lambda: pg_database(postgres, name)) - db0
    tables = pg_tables(cluster.database) - tables0
    return {
        "codes": dict(codes),
        "rps": n / elapsed,
        "cpu_ms": 1000 * cpu / n,
        "redis": {k: v / n for k, v in sorted(cmds.items()) if v > 0},
        "redis_total": sum(v for v in cmds.values() if v > 0) / n,
        "redis_round_trips": sum(
            v for k, v in cmds.items() if v > 0 and k not in IN_SCRIPT
        )
        / n,
        "redis_new_connections": conns1 - conns0,
        "redis_clients": clients,
        "pg": {k: v / n for k, v in sorted(db.items())},
        "pg_rows": {k: v / n for k, v in sorted(tables.items()) if v > 0},
    }


def report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"bench.scaling, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{args.instances} instances x {args.workers} gevent workers behind "
        f"nginx, redis {args.redis_version}, PostgreSQL 15, Python "
        f"{platform.python_version()}; {args.requests} requests per workload, "
        f"{args.concurrency} at a time; load average before "
        f"{args.load_before}, after {_load()}",
        "",
        "| workload | ok | req/s | redis round trips/req (commands run) | "
        "redis commands per request | PG xact/req | PG sessions/req | "
        "PG rows inserted/req | PG rows updated/req | gateway CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        cmds = ", ".join(f"{k} {v:.2f}" for k, v in r["redis"].items())
        rows = ", ".join(
            f"{k.removesuffix(' rows')} {v:.2f}" for k, v in r["pg_rows"].items()
        )
        ok = r["codes"].get(200, 0) / args.requests
        lines.append(
            f"| {name} | {ok:.0%} | {r['rps']:.0f} | {r['redis_round_trips']:.2f} "
            f"({r['redis_total']:.2f}) | {cmds} | "
            f"{r['pg']['xact_commit']:.3f} | {r['pg']['sessions']:.3f} | "
            f"{rows} | {r['pg']['updated']:.2f} | {r['cpu_ms']:.2f} |"
        )
    lines += ["", "Workloads:"]
    lines += [f"- {name}: {WORKLOADS[name][0]}" for name in results]
    conns = {n: r["redis_new_connections"] for n, r in results.items()}
    clients = max(r["redis_clients"] for r in results.values())
    lines += [
        "",
        f"redis connections opened during each workload: {conns}; "
        f"clients connected at the end: {clients} "
        "(the gateways' pools and this script)",
    ]
    return "\n".join(lines)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " / ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--workload", action="append", choices=sorted(WORKLOADS), default=None
    )
    parser.add_argument("--quick", action="store_true", help="100 requests each")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests = 100
    args.load_before = _load()
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the fake provider
    names = args.workload or list(WORKLOADS)
    postgres = PostgresServer()
    try:
        with tempfile.TemporaryDirectory(prefix="crabllm-scaling-") as tmp:
            with running(
                Path(tmp),
                postgres,
                config,
                instances=args.instances,
                workers=args.workers,
                warm_key=PLAIN,
            ) as cluster:
                import redis

                with redis.Redis.from_url(cluster.redis.url) as r:
                    args.redis_version = r.info()["redis_version"]
                WORKLOADS["cache-hit"][1](cluster.nginx.url)  # fill the entry
                results = {
                    name: measure(
                        cluster,
                        postgres,
                        WORKLOADS[name][1],
                        args.requests,
                        args.concurrency,
                    )
                    for name in names
                }
    finally:
        postgres.destroy()
    print(report(args, results))


if __name__ == "__main__":
    main()
