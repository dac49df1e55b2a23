"""Query arguments of the request log (the admin API and the console share
them) and the public JSON form of a record. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from crabllm_sync.audit.store import Cursor, LogFilter, valid_status
from crabllm_sync.errors import InvalidRequestError

NANOS_PER_USD = 1_000_000_000


def parse_time(name: str, value: str | None) -> float | None:
    """Epoch seconds or ISO 8601 (no zone: UTC); None when empty."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequestError(
            f"'{name}' must be epoch seconds or an ISO 8601 date/time", param=name
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_filter(args: Mapping[str, str]) -> LogFilter:
    """key, model, provider, status, since, until, request_id."""
    status = (args.get("status") or "").strip() or None
    if status is not None and not valid_status(status):
        raise InvalidRequestError(
            "'status' must be a status code, 2xx, 4xx, 5xx or error", param="status"
        )
    return LogFilter(
        key=args.get("key") or None,
        model=args.get("model") or None,
        provider=args.get("provider") or None,
        status=status,
        since=parse_time("since", args.get("since")),
        until=parse_time("until", args.get("until")),
        request_id=args.get("request_id") or None,
    )


def parse_cursor(value: str | None) -> Cursor | None:
    """`after`: the next_cursor of the previous page."""
    if not value:
        return None
    cursor = Cursor.parse(value)
    if cursor is None:
        raise InvalidRequestError(
            "'after' must be the next_cursor of a previous page", param="after"
        )
    return cursor


def parse_int(name: str, value: str | None, lo: int, hi: int) -> int | None:
    if not value:
        return None
    try:
        n = int(value)
    except ValueError:
        n = lo - 1
    if not lo <= n <= hi:
        raise InvalidRequestError(
            f"'{name}' must be a whole number from {lo} to {hi}", param=name
        )
    return n


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        datetime.fromtimestamp(ts, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def public(row: Mapping[str, Any]) -> dict[str, Any]:
    """One record as GET /v1/admin/logs answers it."""
    return {
        "object": "request_log",
        "id": row["id"],
        "request_id": row["request_id"],
        "created_at": iso(row["ts"]),
        "key": row["key_name"],
        "requested_model": row["requested_model"],
        "model": row["model"],
        "provider": row["provider"] or None,
        "endpoint": row["endpoint"],
        "status": row["status"],
        "error": None
        if row["error_code"] is None and row["error_message"] is None
        else {"code": row["error_code"], "message": row["error_message"]},
        "latency_ms": row["latency_ms"],
        "ttfb_ms": row["ttfb_ms"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cost": row["cost_nanos"] / NANOS_PER_USD,
        "cost_nanos": row["cost_nanos"],
        "cache_hit": bool(row["cache_hit"]),
        "stream": bool(row["stream"]),
        "attempts": row["attempts"],
        "providers_tried": row["tried"].split(",") if row["tried"] else [],
        "request_body": row["request_body"],
        "response_body": row["response_body"],
    }
