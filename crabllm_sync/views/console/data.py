"""What each console page shows, read from the gateway (no Flask here).

Numbers come from the request log's rollups (charts, spend, per-provider
counts) and from index range reads of recent records (latency percentiles,
recent errors): every page costs the same with a million records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crabllm_sync.audit.schema import DAY, HOUR, QUARTER
from crabllm_sync.audit.store import AuditStore
from crabllm_sync.auth import principal_for
from crabllm_sync.extensions import find
from crabllm_sync.extensions.budget import Budget, period_of
from crabllm_sync.gateway import Gateway
from crabllm_sync.keys.model import KeyRecord

NANOS_PER_USD = 1_000_000_000
MAX_SERIES = 8  # chart lines; the rest are summed as "other"


@dataclass(frozen=True, slots=True)
class Period:
    name: str
    label: str
    seconds: int
    span: int  # rollup read: hourly or daily
    step: int  # chart point: a multiple of span


PERIODS = {
    p.name: p
    for p in (
        Period("24h", "last 24 hours", DAY, HOUR, HOUR),
        Period("7d", "last 7 days", 7 * DAY, QUARTER, QUARTER),
        Period("30d", "last 30 days", 30 * DAY, DAY, DAY),
        Period("90d", "last 90 days", 90 * DAY, DAY, DAY),
    )
}
GROUPS = {"key_name": "key", "model": "model", "provider": "provider"}
METRICS = {
    "cost": ("spend (USD)", "cost_nanos"),
    "requests": ("requests", "requests"),
    "tokens": ("tokens", "tokens"),
    "errors": ("errors", "errors"),
}


def usd(nanos: int | float | None) -> float:
    return (nanos or 0) / NANOS_PER_USD


def overview(gw: Gateway, store: AuditStore | None, now: float) -> dict[str, Any]:
    """Traffic over the last hour and day, per provider health and errors."""
    windows: dict[str, dict[str, Any]] = {}
    per_provider: dict[str, dict[str, Any]] = {}
    if store is not None:
        # The last hour from the records; the day from the hourly rollups.
        windows["hour"] = store.window(now - HOUR)
        day = {"requests": 0, "errors": 0, "cost_nanos": 0}
        for row in store.totals(HOUR, now - DAY, now + HOUR):
            p = per_provider.setdefault(
                row["provider"] or "(none)",
                {"requests": 0, "errors": 0, "latency_ms": 0.0, "cost_nanos": 0},
            )
            for k in ("requests", "errors", "latency_ms", "cost_nanos"):
                p[k] += row[k] or 0
            for k in day:
                day[k] += row[k] or 0
        windows["day"] = {**day, **store.latency(now - DAY)}
        for name, w in windows.items():
            seconds = HOUR if name == "hour" else DAY
            w["rps"] = w["requests"] / seconds
            w["error_rate"] = w["errors"] / w["requests"] if w["requests"] else 0.0
            w["spend"] = usd(w["cost_nanos"])
    providers = []
    for name in gw.config.providers:
        stats = per_provider.get(name, {})
        n = stats.get("requests", 0)
        breakers = [h for h in gw.health.snapshot() if h.provider == name]
        providers.append(
            {
                "name": name,
                "kind": gw.config.providers[name].kind,
                "requests": n,
                "errors": stats.get("errors", 0),
                "error_rate": stats.get("errors", 0) / n if n else 0.0,
                "avg_latency_ms": stats.get("latency_ms", 0.0) / n if n else None,
                "breakers": breakers,
                "worst": _worst(b.state for b in breakers),
                "recent_errors": []
                if store is None
                else store.recent_errors(3, provider=name),
            }
        )
    chart = None
    if store is not None:
        chart = chart_data(
            store.series(HOUR, now - DAY, now + HOUR, "provider"),
            "requests",
            HOUR,
            now - DAY,
            now,
        )
    return {
        "windows": windows,
        "providers": providers,
        "chart": chart,
        "recent_errors": [] if store is None else store.recent_errors(10),
    }


def _worst(states: Any) -> str:
    order = ["open", "half-open", "unknown", "closed"]
    seen = set(states)
    return next((s for s in order if s in seen), "closed")


def chart_data(
    rows: Sequence[dict[str, Any]],
    metric: str,
    span: int,
    since: float,
    until: float,
) -> dict[str, Any]:
    """uPlot's columns: x (bucket starts, every bucket of the period) and one
    series per name (the MAX_SERIES largest; the rest as "other")."""
    start = int(since // span) * span
    xs = list(range(start, int(until) + 1, span))
    index = {x: i for i, x in enumerate(xs)}
    values: dict[str, list[float]] = {}
    for r in rows:
        i = index.get(start + (int(r["bucket"]) - start) // span * span)
        if i is None:
            continue
        series = values.setdefault(str(r["name"] or "(none)"), [0.0] * len(xs))
        series[i] += _metric(r, metric)
    ranked = sorted(values, key=lambda n: -sum(values[n]))
    top, rest = ranked[:MAX_SERIES], ranked[MAX_SERIES:]
    series = [{"name": n, "values": values[n]} for n in top]
    if rest:
        other = [sum(values[n][i] for n in rest) for i in range(len(xs))]
        series.append({"name": f"other ({len(rest)})", "values": other})
    return {"x": xs, "series": series, "label": METRICS[metric][0]}


def _metric(row: dict[str, Any], metric: str) -> float:
    if metric == "cost":
        return usd(row["cost_nanos"])
    if metric == "tokens":
        return float((row["input_tokens"] or 0) + (row["output_tokens"] or 0))
    return float(row[METRICS[metric][1]] or 0)


def usage(
    store: AuditStore,
    period: Period,
    group: str,
    metric: str,
    now: float,
    key: str | None = None,
) -> dict[str, Any]:
    """The usage page: a chart over time and the period's totals per `group`."""
    since = now - period.seconds
    rows = store.series(period.span, since, now + period.span, group, key=key)
    totals = by_name(rows)
    return {
        "chart": chart_data(rows, metric, period.step, since, now),
        "totals": totals,
        "sum": {
            "requests": sum(t["requests"] or 0 for t in totals),
            "errors": sum(t["errors"] or 0 for t in totals),
            "tokens": sum(
                (t["input_tokens"] or 0) + (t["output_tokens"] or 0) for t in totals
            ),
            "spend": usd(sum(t["cost_nanos"] or 0 for t in totals)),
        },
    }


def by_name(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Series rows summed per name, the largest spend first."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        t = out.setdefault(r["name"], {"name": r["name"]})
        for k, v in r.items():
            if k not in ("name", "bucket"):
                t[k] = t.get(k, 0) + (v or 0)
    return sorted(out.values(), key=lambda t: (-t["cost_nanos"], t["name"]))


def keys(gw: Gateway, store: AuditStore | None, now: float) -> list[dict[str, Any]]:
    """Every key with its status, limits, 30-day spend and budget standing."""
    records = gw.keys.list()
    spend = {} if store is None else store.spend_by_key(now - 30 * DAY, None)
    budgeted = _budget_spend(gw, store, now)
    return [key_view(gw, r, now, spend.get(r.name, 0), budgeted) for r in records]


def _budget_spend(
    gw: Gateway, store: AuditStore | None, now: float
) -> tuple[Budget, Any, dict[str, int]] | None:
    """The budget extension, the current budget period, and each key's spend
    in it (from the rollups: a page never rebuilds the live counters)."""
    ext = find(gw.extensions, Budget)
    if ext is None or store is None:
        return None
    period = period_of(now, ext.period)
    return ext, period, store.spend_by_key(period.start, period.end)


def key_view(
    gw: Gateway,
    record: KeyRecord,
    now: float,
    spend_nanos: int = 0,
    budgeted: tuple[Budget, Any, dict[str, int]] | None = None,
    store: AuditStore | None = None,
) -> dict[str, Any]:
    if budgeted is None and store is not None:
        budgeted = _budget_spend(gw, store, now)
    standing = None
    if budgeted is not None:
        ext, period, spent = budgeted
        amount = ext.budget_for(principal_for(record))
        if amount is not None:
            standing = {
                "budget": amount,
                "spent": usd(spent.get(record.name, 0)),
                "period": ext.period,
                "resets_at": None if period.end is None else period.end,
            }
    return {
        "record": record,
        "status": record.status(now),
        "spend_30d": usd(spend_nanos),
        "standing": standing,
    }


def routing(gw: Gateway) -> dict[str, Any]:
    """Deployments per model (weights, retries, timeouts), aliases, breakers."""
    states = {(h.provider, h.model): h for h in gw.health.snapshot()}
    models = []
    for model, deps in sorted(gw.registry.models.items()):
        total = sum(d.weight for d in deps) or 1.0
        models.append(
            {
                "model": model,
                "deployments": [
                    {
                        "provider": d.provider,
                        "kind": d.kind,
                        "upstream_model": d.model,
                        "base_url": d.base_url,
                        "weight": d.weight,
                        "share": d.weight / total,
                        "max_retries": d.max_retries,
                        "timeout": d.timeout,
                        "health": states.get((d.provider, d.model)),
                    }
                    for d in deps
                ],
            }
        )
    return {
        "models": models,
        "aliases": sorted(gw.registry.aliases.items()),
        "routing": gw.config.routing,
    }
