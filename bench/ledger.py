"""The usage ledger at scale: every read path with N usage rows (default
10,000,000), in sqlite and in PostgreSQL.

`python -m bench.ledger --rows 10000000` generates (or reuses) the rows in
/tmp: a sqlite file, and a PostgreSQL cluster of its own (initdb'd once,
started for the run, stopped after). Rows are made by the database itself
(a recursive CTE in sqlite, generate_series in PostgreSQL) over the last 90
days: 50 keys, 12 models, one row in 500 without a key. The schema is made at
version 5 (the release before the rollups), the rows are inserted raw, then
the gateway's own migrate() runs migration 6, whose backfill builds the
rollups: its time is reported. The request log's rollups (what the console
charts read) are summed from the same rows by SQL.

Then each read path is timed, median of --runs runs, in process:
/v1/usage (all keys, one key, from/to inside hours), /v1/admin/usage,
/v1/budget (each run a key whose budget counter is cold, so the ledger is
read), `crabllm-sync usage` (click, config load included) and the console's
usage page data. bench/LEDGER.md gets the figures. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from crabllm_sync.app import create_app
from crabllm_sync.audit import schema as audit_schema
from crabllm_sync.audit.store import AuditStore
from crabllm_sync.config import parse_config
from crabllm_sync.db import MIGRATIONS, Database
from crabllm_sync.keys.cli import usage as usage_command
from crabllm_sync.ledger.schema import bucket_sql
from crabllm_sync.views.console import data

ADMIN = "bench-admin-token-0123456789abcdefghij"
KEYS = 50
MODELS = 12
DAYS = 90
CHUNK = 1_000_000  # rows per generating statement (one transaction each)
OUT = Path(__file__).resolve().parent / "LEDGER.md"
PG_DIR = Path(tempfile.gettempdir()) / "crabllm-ledger-pg"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    for engine in args.engines.split(","):
        print(f"== {engine}, {args.rows:,} rows", flush=True)
        if engine == "sqlite":
            path = Path(tempfile.gettempdir()) / f"crabllm-ledger-{args.rows}.db"
            url = f"sqlite:///{path}"
            if not generated(url, args.rows):
                for leftover in path.parent.glob(path.name + "*"):
                    leftover.unlink()  # a run stopped half way
            results[engine] = run(url, args.rows, args.runs)
        else:
            server = pg_server()
            try:
                url = pg_database(server, f"ledger{args.rows}", args.rows)
                results[engine] = run(url, args.rows, args.runs)
            finally:
                server.stop()
    write_report(args, results)


# -- data ----------------------------------------------------------------------


def run(url: str, rows: int, runs: int) -> dict[str, Any]:
    db = Database(url)
    now = time.time()
    info: dict[str, Any] = {}
    if not generated(url, rows):
        info.update(generate(db, rows, now))
    info["rows"] = rows
    info["rollup_rows"] = count(db, "usage_buckets")
    info["reads"] = time_reads(url, db, runs)
    db.close()
    return info


def generated(url: str, rows: int) -> bool:
    """The database holds the rows and the rollups of a finished run."""
    db = Database(url)
    try:
        with db.db.connection_context():
            if "schema_version" not in db.db.get_tables():
                return False
            versions = {r.version for r in db.m.SchemaVersion.select()}
        return max(MIGRATIONS) in versions and count(db, "usage") >= rows
    finally:
        db.close()


def generate(db: Database, rows: int, now: float) -> dict[str, Any]:
    migrate_to(db, 5)  # the release before the rollups
    start = now - DAYS * 86400
    step = DAYS * 86400 / rows
    t0 = time.perf_counter()
    for lo in range(0, rows, CHUNK):
        hi = min(rows, lo + CHUNK)
        with db.db.connection_context(), db.db.atomic():
            if db.is_sqlite:
                db.db.execute_sql(_sqlite_rows(lo, hi, start, step))
            else:
                db.db.execute_sql("SET LOCAL statement_timeout = 0")
                db.db.execute_sql(_pg_rows(lo, hi, start, step))
        print(f"  {hi:,} rows, {time.perf_counter() - t0:.0f} s", flush=True)
    generate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.migrate()  # migration 6: the rollups' backfill
    backfill_s = time.perf_counter() - t0
    print(f"  migration 6 (backfill) {backfill_s:.0f} s", flush=True)
    t0 = time.perf_counter()
    audit_rollups(db)
    print(f"  request-log rollups {time.perf_counter() - t0:.0f} s", flush=True)
    return {"generate_s": generate_s, "backfill_s": backfill_s}


def migrate_to(db: Database, version: int) -> None:
    with db.db.connection_context(), db.locked("migrate"):
        db.db.create_tables([db.m.SchemaVersion], safe=True)
        for v in sorted(MIGRATIONS):
            if v <= version:
                MIGRATIONS[v](db.m, db.db)
                db.m.SchemaVersion.create(version=v, applied_at=time.time())


_VALUES = (
    "{rid}, {ts},"
    " CASE WHEN {i} % 500 = 0 THEN NULL ELSE 'key-' || ({i} * 7919 % {keys}) END,"
    " 'model-' || ({i} * 104729 % {models}), 'provider-' || ({i} % 4), 'chat',"
    " {i} % 2000, {i} % 300, 0, {i} % 700, 0, {false}, ({i} % 9973) * 1000,"
    " 0, 0, 0, 100 + {i} % 900, CASE WHEN {i} % 33 = 0 THEN 500 ELSE 200 END,"
    " {false}, {false}"
)
_COLUMNS = (
    "request_id, ts, key_name, model, provider, endpoint, input_tokens,"
    " cache_read_tokens, cache_write_tokens, output_tokens, reasoning_tokens,"
    " estimated, cost_nanos, images, characters, audio_ms, latency_ms, status,"
    " stream, cache_hit"
)


def _sqlite_rows(lo: int, hi: int, start: float, step: float) -> str:
    values = _VALUES.format(
        rid="printf('r%010d', i)",
        ts=f"{start!r} + i * {step!r}",
        i="i",
        keys=KEYS,
        models=MODELS,
        false="0",
    )
    return (
        f"INSERT INTO usage ({_COLUMNS}) WITH RECURSIVE c(i) AS"
        f" (SELECT {lo} UNION ALL SELECT i + 1 FROM c WHERE i < {hi - 1})"
        f" SELECT {values} FROM c"
    )


def _pg_rows(lo: int, hi: int, start: float, step: float) -> str:
    values = _VALUES.format(
        rid="'r' || lpad(i::text, 10, '0')",
        ts=f"{start!r} + i * {step!r}",
        i="i",
        keys=KEYS,
        models=MODELS,
        false="false",
    )
    values = values.replace("%", "%%")  # psycopg2's placeholder character
    return (
        f"INSERT INTO usage ({_COLUMNS}) SELECT {values}"
        f" FROM generate_series({lo}::bigint, {hi - 1}) AS i"
    )


def audit_rollups(db: Database) -> None:
    """The request log's rollups (console charts) summed from the usage rows."""
    pg = not db.is_sqlite
    with db.db.connection_context(), db.db.atomic():
        if pg:
            db.db.execute_sql("SET LOCAL statement_timeout = 0")
        for span in audit_schema.SPANS:
            db.db.execute_sql(
                "INSERT INTO usage_rollup (span, bucket, key_name, model, provider,"
                " requests, errors, input_tokens, output_tokens, cost_nanos,"
                f" latency_ms) SELECT {span}, {bucket_sql(span, pg)},"
                " COALESCE(key_name, '-'), model, provider, COUNT(*),"
                " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),"
                " SUM(input_tokens + cache_read_tokens + cache_write_tokens),"
                " SUM(output_tokens), SUM(cost_nanos), SUM(latency_ms)"
                " FROM usage WHERE 1 = 1 GROUP BY 2, 3, 4, 5"
                " ON CONFLICT DO NOTHING"
            )


def count(db: Database, table: str) -> int:
    with db.db.connection_context():
        return db.db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


# -- reads ---------------------------------------------------------------------


def time_reads(url: str, db: Database, runs: int) -> dict[str, float]:
    cfg = {
        "admin_token": ADMIN,
        "providers": {},
        "storage": {"kind": "memory", "database": url, "statement_timeout": 0},
        "extensions": {
            "usage": {},
            "budget": {"default_budget": 1_000_000, "period": "monthly"},
        },
    }
    app = create_app(parse_config(cfg, {}))
    client = app.test_client()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    now = time.time()
    inside = f"from={_iso(now - 7.3 * 86400)}&to={_iso(now - 0.6 * 86400)}"
    store = AuditStore(db)
    config_path = Path(tempfile.mkdtemp()) / "gw.toml"
    config_path.write_text(
        f'admin_token = "{ADMIN}"\n[storage]\nkind = "memory"\n'
        f'database = "{url}"\nstatement_timeout = 0\n'
    )
    cli = CliRunner()
    keys = iter(range(KEYS))

    def get(path: str) -> Callable[[], None]:
        def call() -> None:
            r = client.get(path, headers=admin)
            assert r.status_code == 200, r.data[:300]

        return call

    def budget() -> None:
        # A key not asked before: its counter is cold, so the ledger is read.
        r = client.get(f"/v1/budget?key=key-{next(keys)}", headers=admin)
        assert r.status_code == 200 and r.json["data"][0]["spent_nanos"] > 0, r.data

    def command(*extra: str) -> Callable[[], None]:
        def call() -> None:
            done = cli.invoke(
                usage_command, ["--config", str(config_path), "--json", *extra]
            )
            assert done.exit_code == 0, done.output[-500:]

        return call

    def console(period: str) -> Callable[[], None]:
        return lambda: data.usage(store, data.PERIODS[period], "model", "cost", now)

    paths: dict[str, Callable[[], None]] = {
        "GET /v1/usage (every key, all time)": get("/v1/usage"),
        "GET /v1/usage?key=key-7": get("/v1/usage?key=key-7"),
        "GET /v1/usage?from&to (inside hours, 7 days)": get(f"/v1/usage?{inside}"),
        "GET /v1/usage?model&key&from&to": get(
            f"/v1/usage?key=key-3&model=model-5&{inside}"
        ),
        "GET /v1/usage?limit=10": get("/v1/usage?limit=10"),
        "GET /v1/admin/usage": get("/v1/admin/usage"),
        "GET /v1/admin/usage?key=key-7": get("/v1/admin/usage?key=key-7"),
        "GET /v1/budget?key=… (cold: ledger read)": budget,
        "crabllm-sync usage": command(),
        "crabllm-sync usage --since 7d": command("--since", "7d"),
        "crabllm-sync usage --key key-7 --since 30d": command(
            "--key", "key-7", "--since", "30d"
        ),
        "console usage page data, 7d": console("7d"),
        "console usage page data, 90d": console("90d"),
        "console keys page spend (30 days)": lambda: store.spend_by_key(
            now - 30 * 86400, None
        ),
    }
    out = {}
    for name, call in paths.items():
        call()  # warm: connection, caches
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = statistics.median(times)
        print(f"  {out[name]:8.1f} ms  {name}", flush=True)
    return out


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S")


# -- PostgreSQL ----------------------------------------------------------------


def pg_server() -> Any:
    """A cluster under /tmp kept between runs (its data is the 10M rows)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest import free_port
    from tests.servers import PostgresServer

    if not (PG_DIR / "data" / "PG_VERSION").exists():
        server = PostgresServer()
        server.stop()
        if PG_DIR.exists():
            os.rename(PG_DIR, Path(str(PG_DIR) + f".old{time.time():.0f}"))
        os.rename(server.dir, PG_DIR)
    server = PostgresServer.__new__(PostgresServer)
    server.run_as = PostgresServer._user()
    server.dir = PG_DIR
    server.data = PG_DIR / "data"
    server.port = free_port()
    server.url = f"postgresql://gw@127.0.0.1:{server.port}/postgres"
    server.start()
    return server


def pg_database(server: Any, name: str, rows: int) -> str:
    """The database `name`, made again unless it holds a finished run."""
    import psycopg2

    url = f"postgresql://gw@127.0.0.1:{server.port}/{name}"
    conn = psycopg2.connect(
        host="127.0.0.1", port=server.port, user="gw", dbname="postgres"
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is not None and not generated(url, rows):
            cur.execute(f'DROP DATABASE "{name}"')  # a run stopped half way
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return url


# -- report --------------------------------------------------------------------


def write_report(args: argparse.Namespace, results: dict[str, dict[str, Any]]) -> None:
    """Write (or replace) this row count's section of LEDGER.md."""
    engines = list(results)
    names = list(next(iter(results.values()))["reads"])
    title = f"## {args.rows:,} usage rows"
    lines = [
        title,
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `python -m bench.ledger --rows "
        f"{args.rows} --runs {args.runs}`; {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"sqlite {sqlite3.sqlite_version}. Rows over {DAYS} days, {KEYS} keys, "
        f"{MODELS} models. Median of {args.runs} runs, milliseconds.",
        "",
        "| read path | " + " | ".join(engines) + " |",
        "|---|" + "---:|" * len(engines),
    ]
    for name in names:
        cells = [f"{results[e]['reads'][name]:.1f}" for e in engines]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| data | " + " | ".join(engines) + " |"]
    lines.append("|---|" + "---:|" * len(engines))
    for label, key in (
        ("rollup rows (hourly + daily)", "rollup_rows"),
        ("generating the rows (s)", "generate_s"),
        ("migration 6: backfill of the rollups (s)", "backfill_s"),
    ):
        cells = []
        for e in engines:
            v = results[e].get(key)
            cells.append("(reused)" if v is None else f"{v:,.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    section = "\n".join(lines) + "\n"
    text = args.out.read_text() if args.out.exists() else HEADER
    parts = text.split("\n## ")
    kept = [p for p in parts[1:] if not ("## " + p).startswith(title + "\n")]
    body = (
        parts[0].rstrip("\n")
        + "\n\n"
        + "".join("## " + p.rstrip("\n") + "\n\n" for p in kept)
    )
    args.out.write_text(body + section)
    print(f"wrote {args.out}")


HEADER = """# The usage ledger at scale

`python -m bench.ledger` (see its docstring): every read path of the usage
ledger timed in process (Flask test client for the HTTP paths, click's runner
for the CLI, the console's data function), with the rows generated by the
database and the rollups built by migration 6's backfill. Target: each under
200 ms. The machine is shared with other engineers' work (2 cores, loaded),
so the figures are upper bounds.
"""


if __name__ == "__main__":
    main()
