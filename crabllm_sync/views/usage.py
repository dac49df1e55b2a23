"""Usage, budget, cache and metrics endpoints: /v1/usage, /v1/admin/usage
(admin), /v1/budget, DELETE /v1/cache (admin) and /metrics (metrics or admin
token)."""

from __future__ import annotations

from typing import Any

import peewee
from flask import Blueprint, Response, request

from crabllm_sync.audit.query import parse_time
from crabllm_sync.auth import Principal
from crabllm_sync.errors import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from crabllm_sync.extensions import find
from crabllm_sync.extensions.budget import Budget
from crabllm_sync.extensions.cache import clear
from crabllm_sync.extensions.metrics import MetricsExtension
from crabllm_sync.extensions.rate_limit import RateLimit
from crabllm_sync.extensions.usage import UsageRecorder
from crabllm_sync.gateway import Gateway
from crabllm_sync.metrics import CONTENT_TYPE, health_exposition
from crabllm_sync.pricing import NANOS_PER_USD
from crabllm_sync.storage.memory import MemoryStorage, refuse_unshared
from crabllm_sync.views import json_response

# Rows of GET /v1/usage (one per key and model): the default and the most.
DEFAULT_USAGE_ROWS = 1000
MAX_USAGE_ROWS = 10_000


def make_blueprint(gw: Gateway) -> Blueprint:
    bp = Blueprint("usage", __name__)

    @bp.get("/v1/usage")
    def usage() -> Response:
        ctx = gw.begin("usage", request.headers)
        recorder = _recorder(gw)
        limiter = find(gw.extensions, RateLimit)
        if limiter is not None:
            limiter.admit_request(ctx)  # the key's RPM applies here too
        key = _own_key(ctx.principal, request.args.get("key"))
        return json_response(_usage_list(recorder, key), headers=ctx.headers)

    @bp.get("/v1/admin/usage")
    def admin_usage() -> Response:
        """Every key's usage, for the admin token only (same filters and rows)."""
        gw.auth.require_admin_route(request.headers)
        recorder = _recorder(gw)
        return json_response(_usage_list(recorder, request.args.get("key") or None))

    @bp.get("/v1/budget")
    def budget() -> Response:
        ctx = gw.begin("budget", request.headers)
        ext = find(gw.extensions, Budget)
        if ext is None:
            raise NotFoundError("budgets are not enabled on this gateway")
        if ctx.principal.name is None and not ctx.principal.is_admin:
            principals = [ctx.principal]  # auth is off: the one shared budget
        elif ctx.principal.is_admin:
            wanted = request.args.get("key")
            names = [wanted] if wanted else _budget_keys(gw, ext)
            # Config keys; a key created at run time is read with ?key=NAME
            # by its own token (its limits ride on its Principal).
            principals = [Principal(name=n) for n in names]
        else:
            _own_key(ctx.principal, request.args.get("key"))
            principals = [ctx.principal]
        data = []
        for p in principals:
            standing = ext.standing(p)
            if standing is not None:
                data.append(standing.as_dict())
        return json_response({"object": "list", "data": data})

    @bp.delete("/v1/cache")
    def clear_cache() -> Response:
        ctx = gw.begin("cache", request.headers)
        if not ctx.principal.is_admin:
            raise PermissionDeniedError("clearing the cache needs the admin token")
        if isinstance(gw.storage, MemoryStorage):
            refuse_unshared(request.environ, "clearing the cache")
        return json_response({"deleted": clear(gw.storage)})

    @bp.get("/metrics")
    def metrics() -> Response:
        gw.auth.require_metrics(request.headers)
        ext = find(gw.extensions, MetricsExtension)
        snapshot = gw.health.snapshot()
        if ext is not None:
            body = ext.metrics.render(snapshot)
        else:
            body = health_exposition(snapshot)
        return Response(body, mimetype=None, content_type=CONTENT_TYPE)

    return bp


def _recorder(gw: Gateway) -> UsageRecorder:
    recorder = find(gw.extensions, UsageRecorder)
    if recorder is None:
        raise NotFoundError(
            "usage is not recorded: configure sqlite or redis storage, "
            "or [storage] database"
        )
    return recorder


def _usage_list(recorder: UsageRecorder, key: str | None) -> dict[str, Any]:
    """The usage rows of `key` (every key when None) under the query's filters."""
    model = request.args.get("model") or None
    since = parse_time("from", request.args.get("from"))
    until = parse_time("to", request.args.get("to"))
    limit = _limit_arg()
    # This worker's own buffer, waiting at most FLUSH_BUSY_MS for a lock
    # and not at all while the database is failing; others flush on their
    # timer (within [extensions.usage] flush_interval).
    recorder.flush_now()
    try:
        rows = recorder.db.usage_totals(
            key_name=key, model=model, since=since, until=until, limit=limit
        )
    except (peewee.OperationalError, peewee.InterfaceError) as exc:
        raise ServiceUnavailableError(f"usage database unavailable: {exc}") from None
    return {"object": "list", "data": [_usage_row(r) for r in rows]}


def _sees_all(principal: Principal) -> bool:
    # The admin token, or anyone when auth is off (no keys anywhere).
    return principal.is_admin or principal.name is None


def _own_key(principal: Principal, wanted: str | None) -> str | None:
    """The key filter a principal may use: admin any (or none), a key its own."""
    if _sees_all(principal):
        return wanted or None
    if wanted and wanted != principal.name:
        raise PermissionDeniedError("a key may only read its own usage", param="key")
    return principal.name


def _limit_arg() -> int:
    """`limit`: rows to answer, 1 to MAX_USAGE_ROWS (default DEFAULT_USAGE_ROWS)."""
    value = request.args.get("limit")
    if not value:
        return DEFAULT_USAGE_ROWS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_USAGE_ROWS:
        raise InvalidRequestError(
            f"'limit' must be a whole number from 1 to {MAX_USAGE_ROWS}",
            param="limit",
        )
    return limit


def _usage_row(r: dict[str, Any]) -> dict[str, Any]:
    prompt = r["input_tokens"] + r["cache_read_tokens"] + r["cache_write_tokens"]
    return {
        "key": r["key_name"],
        "model": r["model"],
        "requests": r["requests"],
        "prompt_tokens": prompt,
        "completion_tokens": r["output_tokens"],
        "total_tokens": prompt + r["output_tokens"],
        "cost_usd": r["cost_nanos"] / NANOS_PER_USD,
        "cost_nanos": r["cost_nanos"],
        "input_tokens": r["input_tokens"],
        "cache_read_tokens": r["cache_read_tokens"],
        "cache_write_tokens": r["cache_write_tokens"],
        "reasoning_tokens": r["reasoning_tokens"],
        "images": r["images"],
        "characters": r["characters"],
        "audio_seconds": r["audio_ms"] / 1000,
    }


def _budget_keys(gw: Gateway, ext: Budget) -> list[str]:
    """Keys the admin listing covers: configured keys and [extensions.budget.keys]."""
    names = {k.name for k in gw.config.keys} | set(ext.per_key)
    return sorted(names)
