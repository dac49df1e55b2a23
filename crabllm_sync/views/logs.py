"""GET /v1/admin/logs (filters, cursor pagination) and /v1/admin/logs/<id>:
the request log, admin token only. 404 when there is no SQL database."""

from __future__ import annotations

from flask import Blueprint, Response, request

from crabllm_sync.audit.query import parse_cursor, parse_filter, parse_int, public
from crabllm_sync.audit.store import MAX_PAGE
from crabllm_sync.errors import NotFoundError
from crabllm_sync.extensions import find
from crabllm_sync.extensions.audit import AuditLog
from crabllm_sync.gateway import Gateway
from crabllm_sync.views import json_response

DEFAULT_PAGE = 50


def audit_of(gw: Gateway) -> AuditLog:
    """The request log extension; 404 when the gateway keeps none."""
    ext = find(gw.extensions, AuditLog)
    if ext is None:
        raise NotFoundError(
            "the request log is off: it needs a SQL database ([storage]) "
            "and [extensions.audit] enabled"
        )
    return ext


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("logs", __name__)

    @bp.before_request
    def require_admin() -> None:
        gw.auth.require_admin_route(request.headers)

    @bp.get("/v1/admin/logs")
    def list_logs() -> Response:
        audit = audit_of(gw)
        f = parse_filter(request.args)
        limit = parse_int("limit", request.args.get("limit"), 1, MAX_PAGE)
        cursor = parse_cursor(request.args.get("after"))
        audit.flush_now()  # this worker's own latest records
        rows, next_cursor = audit.store.page(
            f, before=cursor, limit=limit or DEFAULT_PAGE
        )
        return json_response(
            {
                "object": "list",
                "data": [public(r) for r in rows],
                "has_more": next_cursor is not None,
                "next_cursor": None if next_cursor is None else str(next_cursor),
            }
        )

    @bp.get("/v1/admin/logs/<int:record_id>")
    def show_log(record_id: int) -> Response:
        row = audit_of(gw).store.get(record_id)
        if row is None:
            raise NotFoundError(f"no request log record {record_id}")
        return json_response(public(row))

    return bp
