"""Console pages that only read: overview, usage (and its CSV), request log
and one request, providers and routing, and a key's own page."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, g, render_template, request

from crabllm_sync.audit.query import iso, parse_cursor, parse_filter, public
from crabllm_sync.audit.store import AuditStore, LogFilter
from crabllm_sync.errors import InvalidRequestError, NotFoundError
from crabllm_sync.extensions import find
from crabllm_sync.extensions.audit import AuditLog
from crabllm_sync.gateway import Gateway
from crabllm_sync.views.console import data

PAGE_SIZE = 50
# What a signed-in virtual key may open (its own data only).
KEY_PAGES = {"console.me", "console.log", "console.usage_csv"}


def store_of(gw: Gateway) -> AuditStore | None:
    """The request log's store, this worker's buffer written first."""
    ext = find(gw.extensions, AuditLog)
    if ext is None:
        return None
    ext.flush_now()
    return ext.store


def add_routes(bp: Blueprint, gw: Gateway) -> None:
    @bp.get("/")
    def overview() -> str:
        now = gw.clock()
        return render_template(
            "ui/overview.html",
            viewer=g.viewer,
            o=data.overview(gw, store_of(gw), now),
            logging=store_of(gw) is not None,
        )

    @bp.get("/usage")
    def usage() -> str:
        store = _require_store(gw)
        period, group, metric = _usage_args()
        now = gw.clock()
        return render_template(
            "ui/usage.html",
            viewer=g.viewer,
            u=data.usage(store, period, group, metric, now),
            period=period,
            group=group,
            metric=metric,
            periods=data.PERIODS,
            groups=data.GROUPS,
            metrics=data.METRICS,
        )

    @bp.get("/usage.csv")
    def usage_csv() -> Response:
        store = _require_store(gw)
        period, _, _ = _usage_args()
        key = None if g.viewer.is_admin else g.viewer.key
        now = gw.clock()
        since = now - period.seconds
        rows = store.totals(period.span, since, now + period.span, key=key)
        return _csv(rows, period.name)

    @bp.get("/logs")
    def logs() -> str:
        store = _require_store(gw)
        try:
            f = parse_filter(request.args)
            cursor = parse_cursor(request.args.get("after"))
        except InvalidRequestError as err:
            f, cursor, error = LogFilter(), None, err.message
        else:
            error = None
        rows, next_cursor = store.page(f, before=cursor, limit=PAGE_SIZE)
        return render_template(
            "ui/logs.html",
            viewer=g.viewer,
            rows=rows,
            next_cursor=next_cursor,
            args=request.args,
            error=error,
        )

    @bp.get("/logs/<int:record_id>")
    def log(record_id: int) -> str:
        store = _require_store(gw)
        row = store.get(record_id)
        # A key sees only its own records; another's is as if it did not exist.
        if row is None or (not g.viewer.is_admin and row["key_name"] != g.viewer.key):
            raise NotFoundError(f"no request log record {record_id}")
        return render_template("ui/log.html", viewer=g.viewer, r=public(row), raw=row)

    @bp.get("/providers")
    def providers() -> str:
        return render_template("ui/providers.html", viewer=g.viewer, r=data.routing(gw))

    @bp.get("/me")
    def me() -> str:
        viewer = g.viewer
        if viewer.is_admin:
            raise NotFoundError("this page is a virtual key's own view")
        store = store_of(gw)
        period, _, metric = _usage_args()
        now = gw.clock()
        record = gw.keys.get(viewer.key)
        rows: list[dict[str, Any]] = []
        u = None
        if store is not None:
            u = data.usage(store, period, "model", metric, now, key=viewer.key)
            rows, _ = store.page(LogFilter(key=viewer.key), limit=PAGE_SIZE)
        return render_template(
            "ui/me.html",
            viewer=viewer,
            key=data.key_view(gw, record, now, store=store),
            u=u,
            rows=rows,
            period=period,
            metric=metric,
            periods=data.PERIODS,
            metrics=data.METRICS,
        )


def _require_store(gw: Gateway) -> AuditStore:
    store = store_of(gw)
    if store is None:
        raise NotFoundError(
            "the request log is off: it needs a SQL database ([storage] kind = "
            '"sqlite" or a database URL) and [extensions.audit] enabled'
        )
    return store


def _usage_args() -> tuple[data.Period, str, str]:
    period = data.PERIODS.get(request.args.get("period", ""), data.PERIODS["7d"])
    group = request.args.get("group", "")
    group = group if group in data.GROUPS else "model"
    metric = request.args.get("metric", "")
    metric = metric if metric in data.METRICS else "cost"
    return period, group, metric


CSV_COLUMNS = (
    "key_name",
    "model",
    "provider",
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "avg_latency_ms",
)


def _csv(rows: list[dict[str, Any]], period: str) -> Response:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    for r in rows:
        n = r["requests"] or 0
        w.writerow(
            [
                r["key_name"],
                r["model"],
                r["provider"],
                n,
                r["errors"],
                r["input_tokens"],
                r["output_tokens"],
                f"{data.usd(r['cost_nanos']):.9f}",
                f"{(r['latency_ms'] or 0) / n:.1f}" if n else "",
            ]
        )
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="crabllm-usage-{period}.csv"'
        },
    )


__all__ = ["KEY_PAGES", "add_routes", "iso", "store_of"]
