"""Console page times with a million usage rows and a million log records.

`python -m bench.console` makes (or reuses) a sqlite file holding N usage
rows and N request-log records (default 1,000,000 each) spread over the last
30 days: 40 keys, 8 models on 4 providers, 3% errors. The log records go in
through the gateway's own batch writer path (AuditStore.insert), so the
rollups the charts read are built as in production. Then it signs in to the
console in process and times each page (server time: request in, HTML out),
and writes bench/CONSOLE.md. Not part of `make test`; no timing assertions.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from crabllm_sync.app import create_app
from crabllm_sync.audit.store import AuditStore
from crabllm_sync.config import Config
from crabllm_sync.db import Database

ADMIN = "bench-admin-token-0123456789abcdefghij"
KEYS = [f"team-{i:02d}" for i in range(40)]
MODELS = {
    "gpt-4o": "openai",
    "gpt-4o-mini": "openai",
    "claude-sonnet-4": "anthropic",
    "claude-haiku": "anthropic",
    "gemini-2.0-flash": "google",
    "gemini-2.5-pro": "google",
    "llama-3.1-70b": "bedrock",
    "text-embedding-3-small": "openai",
}
DAYS = 30
BATCH = 10_000
PAGE_BOUND_MS = 300.0
PAGES = [
    ("overview", "/ui/"),
    ("keys", "/ui/keys"),
    ("usage, 24 h by model", "/ui/usage?period=24h&group=model&metric=cost"),
    ("usage, 7 d by key", "/ui/usage?period=7d&group=key_name&metric=requests"),
    ("usage, 30 d by provider", "/ui/usage?period=30d&group=provider&metric=tokens"),
    ("usage, 90 d by key", "/ui/usage?period=90d&group=key_name&metric=cost"),
    ("usage CSV, 30 d", "/ui/usage.csv?period=30d"),
    ("request log", "/ui/logs"),
    ("request log, key filter", "/ui/logs?key=team-07"),
    ("request log, 5xx", "/ui/logs?status=5xx"),
    ("request log, provider + model", "/ui/logs?provider=google&model=gemini-2.5-pro"),
    ("request log, since 3 days ago", "/ui/logs?since={since}"),
    ("request log, until 20 days ago", "/ui/logs?until={until}"),
    (
        "request log, key + 5xx + last 7 days",
        "/ui/logs?key=team-05&status=5xx&since={week}",
    ),
    ("request log, page 2", "/ui/logs?after={cursor}"),
    ("one request", "/ui/logs/{one}"),
    ("providers and routing", "/ui/providers"),
]


def config(path: Path) -> Config:
    providers: dict[str, Any] = {}
    for model, provider in MODELS.items():
        providers.setdefault(provider, {"kind": "mock", "models": []})
        providers[provider]["models"].append(model)
    # gpt-4o also on a second deployment, a quarter of the traffic.
    providers["openai"]["weight"] = 3
    providers["azure"] = {"kind": "mock", "models": ["gpt-4o"], "weight": 1}
    return Config.model_validate(
        {
            "admin_token": ADMIN,
            "providers": providers,
            "aliases": {"fast": "gpt-4o-mini", "smart": "claude-sonnet-4"},
            "storage": {"kind": "sqlite", "path": str(path)},
            "keys": [
                {"name": k, "key": f"sk-bench-{k}-secret-000", "budget": 50.0}
                for k in KEYS[:10]
            ]
            + [{"name": k, "key": f"sk-bench-{k}-secret-000"} for k in KEYS[10:]],
        }
    )


def rows(n: int, now: float, rng: random.Random) -> Any:
    """n (usage row, log record) pairs, oldest first, spread over DAYS."""
    start = now - DAYS * 86400
    step = DAYS * 86400 / n
    models = list(MODELS)
    for i in range(n):
        ts = start + i * step
        key = KEYS[min(int(rng.paretovariate(1.2)) - 1, len(KEYS) - 1)]
        model = rng.choice(models)
        provider = MODELS[model]
        failed = rng.random() < 0.03
        status = rng.choice((429, 500, 502, 504)) if failed else 200
        tin = 0 if failed else rng.randint(20, 4000)
        tout = 0 if failed else rng.randint(5, 800)
        cost = tin * 2500 + tout * 10000
        latency = rng.lognormvariate(6.2, 0.7)
        rid = f"bench-{i:08d}"
        usage = {
            "request_id": rid,
            "ts": ts,
            "key_name": key,
            "model": model,
            "provider": provider,
            "endpoint": "chat",
            "input_tokens": tin,
            "output_tokens": tout,
            "cost_nanos": cost,
            "latency_ms": latency,
            "status": status,
        }
        record = {
            **usage,
            "requested_model": model,
            "error_code": "upstream_error" if failed else None,
            "error_message": f"{provider}: HTTP {status}" if failed else None,
            "ttfb_ms": latency * 0.3,
            "attempts": 3 if failed else 1,
            "tried": ",".join([provider] * (3 if failed else 1)),
        }
        yield usage, record


def seed(path: Path, n: int) -> None:
    db = Database(f"sqlite:///{path}")
    db.migrate()
    store = AuditStore(db)
    rng = random.Random(17)
    usage: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    t0 = time.monotonic()
    for u, r in rows(n, time.time(), rng):
        usage.append(u)
        log.append(r)
        if len(usage) >= BATCH:
            db.insert_usage(usage)
            store.insert(log)
            usage, log = [], []
    db.insert_usage(usage)
    store.insert(log)
    print(
        f"seeded {n:,} + {n:,} rows in {time.monotonic() - t0:.0f} s", file=sys.stderr
    )
    db.close()


def sign_in(client: Any) -> None:
    page = client.get("/ui/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/ui/login", data={"token": ADMIN, "csrf_token": token})
    assert r.status_code == 302, r.status_code


def measure(path: Path, repeat: int) -> list[dict[str, Any]]:
    app = create_app(config(path))
    client = app.test_client()
    sign_in(client)
    logs = client.get("/ui/logs").text
    cursor = re.search(r"after=([^\"&]+)", logs).group(1)
    one = re.search(r'/ui/logs/(\d+)"', logs).group(1)
    now = time.time()
    subs = {
        "since": int(now - 3 * 86400),
        "until": int(now - 20 * 86400),
        "week": int(now - 7 * 86400),
        "cursor": cursor,
        "one": one,
    }
    out = []
    for name, url in PAGES:
        url = url.format(**subs)
        times = []
        cold = None
        for i in range(repeat + 1):
            t = time.perf_counter()
            r = client.get(url)
            ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 200, (url, r.status_code, r.text[:300])
            if i == 0:
                cold = ms
            else:
                times.append(ms)
        out.append(
            {
                "page": name,
                "url": url,
                "cold_ms": cold,
                "median_ms": statistics.median(times),
                "max_ms": max(times),
                "bytes": len(r.data),
            }
        )
    app.extensions["crabllm"].close()
    return out


def report(results: list[dict[str, Any]], n: int, path: Path, out: Path) -> None:
    size = path.stat().st_size / 2**20
    load = os.getloadavg()
    lines = [
        "# Console page times with a million rows",
        "",
        f"- Data: {n:,} usage rows and {n:,} request-log records over {DAYS} days "
        f"(40 keys, 8 models, 4 providers, 3% errors), sqlite file {size:,.0f} MiB",
        f"- Machine: {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load average "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
        "`python -m bench.console`",
        "- Time: server time of one GET (Flask test client in process: routing, "
        "queries, template), signed in as the admin. *cold* is the first load "
        "(sqlite page cache empty for that query); median and max of the next "
        "loads.",
        f"- Bound: every page under {PAGE_BOUND_MS:.0f} ms.",
        "",
        "| page | cold ms | median ms | max ms | HTML KB | under bound |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        ok = "yes" if max(r["cold_ms"], r["max_ms"]) < PAGE_BOUND_MS else "**no**"
        lines.append(
            f"| {r['page']} | {r['cold_ms']:.1f} | {r['median_ms']:.1f} | "
            f"{r['max_ms']:.1f} | {r['bytes'] / 1024:.0f} | {ok} |"
        )
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", type=Path, default=None, help="reuse or create this file")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("CONSOLE.md"))
    args = ap.parse_args()
    path = args.db or Path(tempfile.gettempdir()) / f"crabllm-console-{args.rows}.db"
    if not path.exists():
        seed(path, args.rows)
    report(measure(path, args.repeat), args.rows, path, args.out)


if __name__ == "__main__":
    main()
