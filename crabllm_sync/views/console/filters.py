"""Jinja filters of the console: times in UTC, dollars, milliseconds, counts."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint

NANOS_PER_USD = 1_000_000_000


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def usd(value: float | None) -> str:
    v = value or 0.0
    if v == 0:
        return "$0"
    if v < 0.01:
        return f"${v:.6f}"
    return f"${v:,.2f}"


def nanos(value: int | None) -> str:
    return usd((value or 0) / NANOS_PER_USD)


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def num(value: float | int | None) -> str:
    v = value or 0
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.2f}"
    return f"{int(v):,}"


def register(bp: Blueprint) -> None:
    for name, fn in (
        ("when", when),
        ("usd", usd),
        ("nanos", nanos),
        ("ms", ms),
        ("pct", pct),
        ("num", num),
    ):
        bp.add_app_template_filter(fn, name)
