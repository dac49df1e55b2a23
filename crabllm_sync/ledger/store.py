"""Writing usage rows with their rollups, reading totals from the rollups,
and pruning raw rows past retention. Plain SQL for sqlite and PostgreSQL;
the caller (db.Database) holds the connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import peewee

from crabllm_sync.ledger import plan, schema
from crabllm_sync.ledger.plan import NO_KEY, SUMS, Part

# Rows per INSERT statement: sqlite allows 32766 parameters per statement.
INSERT_CHUNK = 500
PRUNE_CHUNK = 5000  # raw rows deleted per statement: a short hold of the table


def insert(
    db: peewee.Database,
    table: str,
    fields: Sequence[tuple[str, Any]],
    rows: Sequence[dict[str, Any]],
) -> None:
    """Insert `rows` (a request_id already stored is skipped) and add the
    rows actually stored to the rollups. The caller runs this in one
    transaction, so the rollups and the raw rows never disagree."""
    columns = ", ".join(f'"{name}"' for name, _ in fields)
    one = "(" + ", ".join([db.param] * len(fields)) + ")"
    cursor = db.cursor()
    stored: set[str] = set()
    for i in range(0, len(rows), INSERT_CHUNK):
        chunk = rows[i : i + INSERT_CHUNK]
        values = [row.get(name, default) for row in chunk for name, default in fields]
        # RETURNING names the rows stored (sqlite >= 3.35, PostgreSQL): a
        # duplicate request_id (a batch retried after a lost commit) adds
        # nothing to the rollups.
        cursor.execute(
            f'INSERT INTO "{table}" ({columns}) VALUES '
            + ", ".join([one] * len(chunk))
            + " ON CONFLICT DO NOTHING RETURNING request_id",
            values,
        )
        stored.update(r[0] for r in cursor.fetchall())
    adds = [
        (*k, *v) for k, v in plan.increments(plan.first_of_each(rows, stored)).items()
    ]
    # One statement per chunk of buckets (each bucket once: ON CONFLICT DO
    # UPDATE may touch a row only once per statement), not one per bucket.
    for i in range(0, len(adds), INSERT_CHUNK):
        chunk = adds[i : i + INSERT_CHUNK]
        cursor.execute(
            schema.upsert_sql(db.param, len(chunk)),
            [v for add in chunk for v in add],
        )


def totals(
    db: peewee.Database,
    *,
    key_name: str | None,
    model: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
) -> list[dict[str, Any]]:
    """Per key and model over [since, until): requests and sums, ordered by
    key then model (a NULL key where the database sorts NULL), at most
    `limit` rows. Whole days and hours come from the rollups, the minutes at
    the ends from raw rows."""
    parts = plan.split(since, until)
    if not parts:
        return []
    p = db.param
    selects: list[str] = []
    args: list[Any] = []
    sqlite = isinstance(db, peewee.SqliteDatabase)
    for part in parts:
        sql, part_args = _part(part, p, key_name, model, sqlite)
        selects.append(sql)
        args += part_args
    sums = ", ".join(f"SUM({c}) AS {c}" for c in ("requests", *SUMS))
    sql = (
        f"SELECT NULLIF(key_name, '{NO_KEY}') AS key_name, model, {sums} FROM ("
        + " UNION ALL ".join(selects)
        + f") AS parts GROUP BY key_name, model ORDER BY NULLIF(key_name, '{NO_KEY}')"
        ", model"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    cur = db.execute_sql(sql, tuple(args))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _part(
    part: Part, p: str, key_name: str | None, model: str | None, sqlite: bool
) -> tuple[str, list[Any]]:
    cols = ", ".join(("requests", *SUMS))
    plus = ""
    if part.span:
        sql = f"SELECT key_name, model, {cols} FROM {schema.TABLE} WHERE span = {p}"
        args: list[Any] = [part.span]
        column = "bucket"
    else:
        sql = (
            f"SELECT COALESCE(key_name, '{NO_KEY}') AS key_name, model, "
            f"1 AS requests, {', '.join(SUMS)} FROM usage WHERE 1 = 1"
        )
        args = []
        column = "ts"
        # sqlite, without statistics, would read a key's (or model's) every
        # row through its index; the unary + leaves it the ts range.
        plus = "+" if sqlite else ""
    if part.lo is not None:
        sql += f" AND {column} >= {p}"
        args.append(part.lo)
    if part.hi is not None:
        sql += f" AND {column} < {p}"
        args.append(part.hi)
    if key_name is not None:
        sql += f" AND {plus}key_name = {p}"
        args.append(key_name)
    if model is not None:
        sql += f" AND {plus}model = {p}"
        args.append(model)
    return sql, args


def claim(db: peewee.Database, job: str, now: float, every: float) -> bool:
    """True for the one caller (of every worker and instance) that may run
    `job` now: the last run was `every` seconds ago or more."""
    p = db.param
    cur = db.execute_sql(
        f"INSERT INTO ledger_jobs (name, run_at) VALUES ({p}, {p}) "
        "ON CONFLICT (name) DO UPDATE SET run_at = excluded.run_at "
        f"WHERE ledger_jobs.run_at <= {p}",
        (job, now, now - every),
    )
    return (cur.rowcount or 0) == 1


def prune(db: peewee.Database, before: float, chunk: int | None = None) -> int:
    """Delete at most `chunk` (PRUNE_CHUNK) raw usage rows older than
    `before`; the number deleted. The rollups keep their sums."""
    p = db.param
    chunk = PRUNE_CHUNK if chunk is None else chunk
    cur = db.execute_sql(
        "DELETE FROM usage WHERE id IN (SELECT id FROM usage"
        f" WHERE ts < {p} ORDER BY ts LIMIT {int(chunk)})",
        (before,),
    )
    return cur.rowcount or 0
