"""The usage rollup table `usage_buckets` and its backfill (db.py migration 6).

One row per (span, bucket, key, model): hourly and daily sums of the raw
`usage` rows, kept in step by Database.insert_usage in the transaction of each
batch. `ledger_jobs` holds when a periodic job (retention) last ran, so one
worker of all instances runs it at a time. Plain SQL for sqlite and PostgreSQL.
"""

from __future__ import annotations

import peewee

from crabllm_sync.ledger.plan import NO_KEY, SPANS, SUMS

TABLE = "usage_buckets"
KEY = ("span", "bucket", "key_name", "model")
COLUMNS = (*KEY, "requests", *SUMS)
BACKFILL_ROWS = 200_000  # raw rows (by id) read per backfill statement


def create(db: peewee.Database) -> None:
    sums = ", ".join(f"{c} BIGINT NOT NULL DEFAULT 0" for c in ("requests", *SUMS))
    db.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "span INTEGER NOT NULL, bucket BIGINT NOT NULL, "
        "key_name VARCHAR(128) NOT NULL, model VARCHAR(256) NOT NULL, "
        f"{sums}, PRIMARY KEY ({', '.join(KEY)}))"
    )
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS ledger_jobs ("
        "name VARCHAR(64) PRIMARY KEY, run_at DOUBLE PRECISION NOT NULL)"
    )


def upsert_sql(param: str, rows: int = 1) -> str:
    """Add `rows` increments, each to its bucket (ON CONFLICT: sqlite >= 3.24,
    PostgreSQL)."""
    adds = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in ("requests", *SUMS))
    return (
        f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
        "VALUES " + ", ".join([f"({', '.join([param] * len(COLUMNS))})"] * rows) + " "
        f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {adds}"
    )


def bucket_sql(span: int, postgres: bool) -> str:
    """The bucket of `ts` in SQL: the largest multiple of `span` <= ts, as
    plan.floor_to computes it (the division's rounding is corrected)."""
    cast = "BIGINT" if postgres else "INTEGER"
    guess = (
        f"(CAST(FLOOR(ts / {span}) AS {cast}) * {span})"
        if postgres
        else (f"(CAST(ts / {span} AS {cast}) * {span})")
    )
    return (
        f"({guess} - CASE WHEN {guess} > ts THEN {span} ELSE 0 END"
        f" + CASE WHEN {guess} + {span} <= ts THEN {span} ELSE 0 END)"
    )


def backfill(db: peewee.Database, table: str = "usage") -> None:
    """Sum every raw row into the rollups, BACKFILL_ROWS ids per statement
    (each statement stays short: PostgreSQL's statement_timeout applies).
    Runs inside the migration's transaction and lock."""
    postgres = isinstance(db, peewee.PostgresqlDatabase)
    cur = db.execute_sql(f'SELECT MIN(id), MAX(id) FROM "{table}"')
    lo, hi = cur.fetchone()
    if lo is None:
        return
    p = db.param
    sums = ", ".join(f"SUM({c})" for c in SUMS)
    adds = ", ".join(f"{c} = {TABLE}.{c} + excluded.{c}" for c in ("requests", *SUMS))
    for span in SPANS:
        bucket = bucket_sql(span, postgres)
        sql = (
            f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
            f"SELECT {span}, {bucket}, COALESCE(key_name, '{NO_KEY}'), model, "
            f'COUNT(*), {sums} FROM "{table}" WHERE id >= {p} AND id < {p} '
            f"GROUP BY 2, 3, 4 "
            f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {adds}"
        )
        for start in range(lo, hi + 1, BACKFILL_ROWS):
            db.execute_sql(sql, (start, start + BACKFILL_ROWS))
