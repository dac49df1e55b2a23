"""Which parts of a [since, until) period the usage rollups answer (pure).

A period is cut into whole days (daily rollups), whole hours at its ends
(hourly rollups) and the minutes before its first and after its last hour
boundary (raw usage rows). Every part is half-open and they do not overlap,
so their sums are the sums of the raw rows over the whole period.

A row's bucket of a span is the largest multiple of the span at or before
its `ts`; the SQL backfill computes the same (schema.bucket_sql).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HOUR = 3600
DAY = 86400
SPANS = (HOUR, DAY)
# Bounds beyond this are treated as unbounded (or as an empty period): the
# bucket of such a time would not fit a BIGINT, and no row is that far out.
FAR = float(2**53)
# The rollup's key_name for rows without a key (auth off). Key names are never
# empty (keys/model.py), and a rollup key column cannot be NULL.
NO_KEY = ""

# Summed columns of a usage row, in the rollup's column order.
SUMS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "images",
    "characters",
    "audio_ms",
)


@dataclass(frozen=True, slots=True)
class Part:
    """`span` 0: raw rows with lo <= ts < hi; else that span's rollup
    buckets with lo <= bucket < hi. None: unbounded on that side."""

    span: int
    lo: int | float | None
    hi: int | float | None


def floor_to(ts: float, span: int) -> int:
    return int(ts // span) * span


def ceil_to(ts: float, span: int) -> int:
    return -int(-ts // span) * span


def split(since: float | None, until: float | None) -> list[Part]:
    """The parts of [since, until), in time order ([] for an empty period)."""
    bounds = _bounds(since, until)
    if bounds is None:
        return []
    since, until = bounds
    h_lo = None if since is None else ceil_to(since, HOUR)
    h_hi = None if until is None else floor_to(until, HOUR)
    if h_lo is not None and h_hi is not None and h_lo >= h_hi:
        return [Part(0, since, until)]  # no whole hour inside
    head = [] if since is None or since == h_lo else [Part(0, since, h_lo)]
    tail = [] if until is None or until == h_hi else [Part(0, h_hi, until)]
    d_lo = None if h_lo is None else ceil_to(h_lo, DAY)
    d_hi = None if h_hi is None else floor_to(h_hi, DAY)
    if d_lo is not None and d_hi is not None and d_lo >= d_hi:
        return [*head, Part(HOUR, h_lo, h_hi), *tail]  # no whole day inside
    middle = []
    if h_lo is not None and d_lo is not None and h_lo < d_lo:
        middle.append(Part(HOUR, h_lo, d_lo))
    middle.append(Part(DAY, d_lo, d_hi))
    if h_hi is not None and d_hi is not None and d_hi < h_hi:
        middle.append(Part(HOUR, d_hi, h_hi))
    return [*head, *middle, *tail]


def _bounds(
    since: float | None, until: float | None
) -> tuple[float | None, float | None] | None:
    """Finite, in-range bounds, or None when no row can fall inside."""
    if (
        since is not None
        and math.isnan(since)
        or until is not None
        and (math.isnan(until))
    ):
        return None  # ts >= NaN is never true
    if since is not None and since < -FAR:
        since = None
    if until is not None and until > FAR:
        until = None
    if since is not None and since > FAR or until is not None and until < -FAR:
        return None
    if since is not None and until is not None and since >= until:
        return None
    return since, until


def increments(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[int, int, str, str], list[int]]:
    """Per (span, bucket, key, model): [requests, *SUMS] of `rows`."""
    out: dict[tuple[int, int, str, str], list[int]] = {}
    for r in rows:
        ts = r["ts"]
        key = r.get("key_name") or NO_KEY
        model = r["model"]
        values = [int(r.get(name) or 0) for name in SUMS]
        for span in SPANS:
            acc = out.get((span, floor_to(ts, span), key, model))
            if acc is None:
                out[(span, floor_to(ts, span), key, model)] = [1, *values]
            else:
                acc[0] += 1
                for i, v in enumerate(values, 1):
                    acc[i] += v
    return out


def first_of_each(
    rows: Sequence[Mapping[str, Any]], inserted: set[str]
) -> list[Mapping[str, Any]]:
    """The rows an INSERT .. ON CONFLICT DO NOTHING stored: the first row of
    each request_id in `inserted` (a later duplicate in the batch was skipped)."""
    left = set(inserted)
    out = []
    for r in rows:
        rid = r["request_id"]
        if rid in left:
            left.discard(rid)
            out.append(r)
    return out
