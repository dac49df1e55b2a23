"""The audit tables: `audit_log` (one row per request) and `usage_rollup`
(per span, bucket, key, model and provider: counts, tokens, cost, latency).

Plain SQL that sqlite and PostgreSQL both run. Created by db.py migration 3.
"""

from __future__ import annotations

import peewee

HOUR = 3600
DAY = 86400
QUARTER = 6 * HOUR  # a quarter of a day: the 7-day chart's points
SPANS = (HOUR, QUARTER, DAY)

# (column, SQL type, default) of audit_log after its id, in insert order.
LOG_COLUMNS: tuple[tuple[str, str, object], ...] = (
    ("request_id", "VARCHAR(128) NOT NULL", ""),
    ("ts", "DOUBLE PRECISION NOT NULL", 0.0),
    ("key_name", "VARCHAR(128) NOT NULL", "-"),
    ("requested_model", "VARCHAR(256) NOT NULL", ""),
    ("model", "VARCHAR(256) NOT NULL", ""),
    ("provider", "VARCHAR(128) NOT NULL", ""),
    ("endpoint", "VARCHAR(32) NOT NULL", ""),
    ("status", "INTEGER NOT NULL", 200),
    ("error_code", "VARCHAR(64)", None),
    ("error_message", "TEXT", None),
    ("latency_ms", "DOUBLE PRECISION NOT NULL", 0.0),
    ("ttfb_ms", "DOUBLE PRECISION", None),
    ("input_tokens", "BIGINT NOT NULL", 0),
    ("output_tokens", "BIGINT NOT NULL", 0),
    ("cost_nanos", "BIGINT NOT NULL", 0),
    ("cache_hit", "BOOLEAN NOT NULL", False),
    ("stream", "BOOLEAN NOT NULL", False),
    ("attempts", "INTEGER NOT NULL", 0),
    ("tried", "TEXT NOT NULL", ""),  # providers called, comma-separated, in order
    ("request_body", "TEXT", None),
    ("response_body", "TEXT", None),
)
LOG_FIELDS = tuple(name for name, _, _ in LOG_COLUMNS)

ROLLUP_KEY = ("span", "bucket", "key_name", "model", "provider")
ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_nanos",
    "latency_ms",
)


def create(db: peewee.Database) -> None:
    """Create both tables and their indexes (each filter of the log is an
    index range read newest first; errors have their own partial indexes)."""
    pk = (
        "BIGSERIAL PRIMARY KEY"
        if isinstance(db, peewee.PostgresqlDatabase)
        else "INTEGER PRIMARY KEY AUTOINCREMENT"
    )
    cols = ", ".join(f"{name} {sql}" for name, sql, _ in LOG_COLUMNS)
    db.execute_sql(f"CREATE TABLE IF NOT EXISTS audit_log (id {pk}, {cols})")
    # The log is read newest first by (ts, id); every filter has an index
    # ending in ts (and the row id), so a filter with since/until is one
    # index range and the order needs no sort.
    for name, columns, where in (
        ("audit_log_ts", "ts, id", ""),
        ("audit_log_request", "request_id", ""),
        ("audit_log_key", "key_name, ts, id", ""),
        ("audit_log_model", "model, ts, id", ""),
        ("audit_log_provider", "provider, ts, id", ""),
        ("audit_log_status", "status, ts, id", ""),
        ("audit_log_errors", "ts, id", " WHERE status >= 400"),
        ("audit_log_provider_errors", "provider, ts, id", " WHERE status >= 400"),
    ):
        db.execute_sql(
            f"CREATE INDEX IF NOT EXISTS {name} ON audit_log ({columns}){where}"
        )
    sums = ", ".join(
        f"{c} {'DOUBLE PRECISION' if c == 'latency_ms' else 'BIGINT'}"
        " NOT NULL DEFAULT 0"
        for c in ROLLUP_SUMS
    )
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS usage_rollup ("
        "span INTEGER NOT NULL, bucket BIGINT NOT NULL, "
        "key_name VARCHAR(128) NOT NULL, model VARCHAR(256) NOT NULL, "
        f"provider VARCHAR(128) NOT NULL, {sums}, "
        f"PRIMARY KEY ({', '.join(ROLLUP_KEY)}))"
    )
