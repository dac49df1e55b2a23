"""Writing and reading the request log and its usage rollups.

Writes come in batches from the flusher (extensions/audit.py): the records
and the rollup increments of a batch commit in one transaction. Reads are
index range reads (newest first, keyset cursor on id) and rollup sums, so a
page costs the same with a million records as with a hundred.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

import peewee

from crabllm_sync.audit.schema import (
    DAY,
    LOG_COLUMNS,
    LOG_FIELDS,
    ROLLUP_KEY,
    ROLLUP_SUMS,
    SPANS,
)
from crabllm_sync.db import SQLITE_BUSY_MS, Database
from crabllm_sync.storage.postgres import driver_errors

MAX_PAGE = 200
PRUNE_CHUNK = 1000  # rows deleted per statement: a short hold of the database
# Status filters beside an exact code.
STATUS_CLASSES = {"2xx": (200, 300), "4xx": (400, 500), "5xx": (500, 600)}

MAX_ID = 2**63 - 1  # the largest SQL BIGINT, sqlite INTEGER and PostgreSQL id


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of the log ends: the last record's time and id.

    Written `<ts>_<id>` in URLs and API answers (opaque to clients)."""

    ts: float
    id: int

    def __str__(self) -> str:
        return f"{self.ts!r}_{self.id}"

    @classmethod
    def parse(cls, text: str) -> Cursor | None:
        ts, sep, rid = text.partition("_")
        try:
            cursor = cls(float(ts), int(rid))
        except ValueError:
            return None
        return cursor if sep and cursor.id > 0 and cursor.ts == cursor.ts else None


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What GET /v1/admin/logs and the console's log page filter on."""

    key: str | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None  # "429", "2xx", "4xx", "5xx" or "error" (>= 400)
    since: float | None = None
    until: float | None = None
    request_id: str | None = None


class AuditStore:
    """The audit tables of one Database."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.db: peewee.Database = database.db

    # -- writing ---------------------------------------------------------------

    def insert(
        self, rows: Sequence[dict[str, Any]], *, busy_timeout_ms: int | None = None
    ) -> None:
        """Store records and add them to the rollups, in one transaction."""
        if not rows:
            return
        log_sql, rollup_sql = self._sql
        values = [
            tuple(row.get(name, default) for name, _, default in LOG_COLUMNS)
            for row in rows
        ]
        increments = [(*k, *v) for k, v in rollups(rows).items()]
        with self.db.connection_context():
            sqlite = self.database.is_sqlite
            if busy_timeout_ms is not None and sqlite:
                self.db.execute_sql(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            try:
                with self.db.atomic(), driver_errors():
                    cursor = self.db.cursor()
                    cursor.executemany(log_sql, values)
                    cursor.executemany(rollup_sql, increments)
            finally:
                if busy_timeout_ms is not None and sqlite:
                    self.db.execute_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    @cached_property
    def _sql(self) -> tuple[str, str]:
        p = self.db.param
        log_sql = (
            f"INSERT INTO audit_log ({', '.join(LOG_FIELDS)}) "
            f"VALUES ({', '.join([p] * len(LOG_FIELDS))})"
        )
        cols = (*ROLLUP_KEY, *ROLLUP_SUMS)
        adds = ", ".join(f"{c} = usage_rollup.{c} + excluded.{c}" for c in ROLLUP_SUMS)
        rollup_sql = (
            f"INSERT INTO usage_rollup ({', '.join(cols)}) "
            f"VALUES ({', '.join([p] * len(cols))}) "
            f"ON CONFLICT ({', '.join(ROLLUP_KEY)}) DO UPDATE SET {adds}"
        )
        return log_sql, rollup_sql

    def prune(self, before: float, chunk: int = PRUNE_CHUNK) -> int:
        """Delete at most `chunk` records older than `before` (epoch
        seconds); the number deleted. Rollups are kept (they are small and
        make the long charts)."""
        p = self.db.param
        with self.db.connection_context():
            with self.db.atomic():
                cur = self.db.execute_sql(
                    "DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log"
                    f" WHERE ts < {p} ORDER BY ts LIMIT {int(chunk)})",
                    (before,),
                )
            return cur.rowcount or 0

    # -- reading the log -------------------------------------------------------

    def page(
        self, f: LogFilter, *, before: Cursor | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], Cursor | None]:
        """Records matching `f`, newest first (by time, then id), after the
        cursor `before`; and the cursor of the next page (None on the last)."""
        limit = max(1, min(limit, MAX_PAGE))
        p = self.db.param
        where, args = _where(f, p)
        if before is not None:
            where.append(f"(ts < {p} OR (ts = {p} AND id < {p}))")
            args += [before.ts, before.ts, before.id]
        sql = "SELECT id, " + ", ".join(LOG_FIELDS) + " FROM audit_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY ts DESC, id DESC LIMIT {limit + 1}"
        rows = self._dicts(sql, args)
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (Cursor(rows[-1]["ts"], rows[-1]["id"]) if more else None)

    def get(self, record_id: int) -> dict[str, Any] | None:
        # Ids are SQL BIGINTs: a larger one names no record (sqlite's driver
        # would raise OverflowError on it).
        if not 0 <= record_id <= MAX_ID:
            return None
        columns = ", ".join(LOG_FIELDS)
        sql = f"SELECT id, {columns} FROM audit_log WHERE id = {self.db.param}"
        rows = self._dicts(sql, [record_id])
        return rows[0] if rows else None

    def recent_errors(
        self, limit: int = 10, provider: str | None = None
    ) -> list[dict[str, Any]]:
        """The latest failed requests (a partial index keeps this cheap)."""
        p = self.db.param
        sql = f"SELECT id, {', '.join(LOG_FIELDS)} FROM audit_log WHERE status >= 400"
        args: list[Any] = []
        if provider is not None:
            sql += f" AND provider = {p}"
            args.append(provider)
        sql += f" ORDER BY ts DESC, id DESC LIMIT {int(limit)}"
        return self._dicts(sql, args)

    def window(self, since: float, sample: int = 5000) -> dict[str, Any]:
        """Requests, errors and spend since `since` (records read through the
        ts index: meant for the last hour), and latency percentiles."""
        p = self.db.param
        totals = self._dicts(
            "SELECT COUNT(*) AS requests,"
            " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors,"
            f" SUM(cost_nanos) AS cost_nanos FROM audit_log WHERE ts >= {p}",
            [since],
        )[0]
        return {
            "requests": int(totals["requests"] or 0),
            "errors": int(totals["errors"] or 0),
            "cost_nanos": int(totals["cost_nanos"] or 0),
            **self.latency(since, sample),
        }

    def latency(self, since: float, sample: int = 5000) -> dict[str, Any]:
        """P50 and P99 latency of the latest `sample` records since `since`."""
        latencies = sorted(
            r["latency_ms"]
            for r in self._dicts(
                f"SELECT latency_ms FROM audit_log WHERE ts >= {self.db.param}"
                f" ORDER BY ts DESC LIMIT {int(sample)}",
                [since],
            )
        )
        return {
            "p50_ms": _percentile(latencies, 0.50),
            "p99_ms": _percentile(latencies, 0.99),
            "sampled": len(latencies),
        }

    # -- reading the rollups ---------------------------------------------------

    def series(
        self,
        span: int,
        since: float,
        until: float,
        by: str,
        key: str | None = None,
    ) -> list[dict[str, Any]]:
        """Per bucket and `by` (key_name, model or provider): the sums."""
        if by not in ("key_name", "model", "provider"):
            raise ValueError(f"cannot group by {by!r}")
        return self._rollup(
            f"bucket, {by} AS name",
            f"GROUP BY bucket, {by} ORDER BY bucket",
            span,
            since,
            until,
            key,
        )

    def totals(
        self, span: int, since: float, until: float, key: str | None = None
    ) -> list[dict[str, Any]]:
        """Per key, model and provider over the period: the sums (CSV, tables)."""
        return self._rollup(
            "key_name, model, provider",
            "GROUP BY key_name, model, provider ORDER BY SUM(cost_nanos) DESC",
            span,
            since,
            until,
            key,
        )

    def _rollup(
        self,
        columns: str,
        grouping: str,
        span: int,
        since: float,
        until: float,
        key: str | None,
    ) -> list[dict[str, Any]]:
        """`columns` and every ROLLUP_SUMS sum of the `span` rollups from the
        bucket holding `since` to `until` (of one key, when given), `grouping`
        (our own SQL text, never a client's) after."""
        p = self.db.param
        sums = ", ".join(f"SUM({c}) AS {c}" for c in ROLLUP_SUMS)
        sql = (
            f"SELECT {columns}, {sums} FROM usage_rollup"
            f" WHERE span = {p} AND bucket >= {p} AND bucket < {p}"
        )
        args: list[Any] = [span, _floor(since, span), until]
        if key is not None:
            sql += f" AND key_name = {p}"
            args.append(key)
        return self._dicts(f"{sql} {grouping}", args)

    def spend_by_key(self, since: float | None, until: float | None) -> dict[str, int]:
        """Cost (nanos) per key between two day boundaries (None: unbounded),
        from the daily rollups: one read for every key."""
        p = self.db.param
        sql = (
            "SELECT key_name, SUM(cost_nanos) AS cost FROM usage_rollup"
            f" WHERE span = {p}"
        )
        args: list[Any] = [DAY]
        if since is not None:
            sql += f" AND bucket >= {p}"
            args.append(_floor(since, DAY))
        if until is not None:
            sql += f" AND bucket < {p}"
            args.append(until)
        sql += " GROUP BY key_name"
        return {r["key_name"]: int(r["cost"] or 0) for r in self._dicts(sql, args)}

    def _dicts(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        with self.db.connection_context():
            cur = self.db.execute_sql(sql, tuple(args))
            names = [d[0] for d in cur.description]
            return [
                dict(zip(names, map(_plain, row), strict=True))
                for row in cur.fetchall()
            ]


def _plain(value: Any) -> Any:
    """PostgreSQL's SUM of a BIGINT is a NUMERIC (Decimal): an int here, as
    sqlite answers, so the console's arithmetic with floats works."""
    return int(value) if isinstance(value, Decimal) else value


def rollups(rows: Sequence[dict[str, Any]]) -> dict[tuple[Any, ...], list[Any]]:
    """The rollup increments of a batch of records (pure)."""
    out: dict[tuple[Any, ...], list[Any]] = {}
    for r in rows:
        failed = 1 if r.get("status", 200) >= 400 else 0
        for span in SPANS:
            k = (
                span,
                _floor(r["ts"], span),
                r.get("key_name", "-"),
                r.get("model", ""),
                r.get("provider", ""),
            )
            acc = out.setdefault(k, [0, 0, 0, 0, 0, 0.0])
            acc[0] += 1
            acc[1] += failed
            acc[2] += r.get("input_tokens", 0)
            acc[3] += r.get("output_tokens", 0)
            acc[4] += r.get("cost_nanos", 0)
            acc[5] += r.get("latency_ms", 0.0)
    return out


def _floor(ts: float, span: int) -> int:
    return int(ts // span) * span


def _percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[i]


def _where(f: LogFilter, p: str) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("key_name", f.key),
        ("model", f.model),
        ("provider", f.provider),
        ("request_id", f.request_id),
    ):
        if value:
            where.append(f"{column} = {p}")
            args.append(value)
    if f.status:
        if f.status == "error":
            where.append("status >= 400")
        elif f.status in STATUS_CLASSES:
            lo, hi = STATUS_CLASSES[f.status]
            where.append(f"status >= {lo} AND status < {hi}")
        else:
            where.append(f"status = {p}")
            args.append(int(f.status))
    if f.since is not None:
        where.append(f"ts >= {p}")
        args.append(f.since)
    if f.until is not None:
        where.append(f"ts < {p}")
        args.append(f.until)
    return where, args


def valid_status(value: str) -> bool:
    return value in ("error", *STATUS_CLASSES) or (value.isdigit() and len(value) == 3)
