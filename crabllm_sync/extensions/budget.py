"""USD budgets per key and period, reserved before dispatch and settled after.

The period a request falls in is computed from its timestamp (UTC), so a
reset needs no cron job. Spent money is an integer nanodollar counter on the
shared storage: reserve the most the request may cost (atomic incr), refuse
when spent + that reservation would pass the budget, settle to the actual cost
afterwards. A counter the storage lost (a redis restarted empty, an evicted
key) is rebuilt from the SQL usage ledger before it decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import peewee

from crabllm_sync import pricing, reservation
from crabllm_sync.config import Config
from crabllm_sync.errors import PermissionDeniedError, QuotaExceededError
from crabllm_sync.extensions import Extension, guarded, key_limit, key_name
from crabllm_sync.extensions.accounting import charge_of, reserved_of
from crabllm_sync.extensions.held import Reservation, settle
from crabllm_sync.pricing import NANOS_PER_USD
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.auth import Principal
    from crabllm_sync.context import RequestContext
    from crabllm_sync.db import Database
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

# A period's counter outlives the period by this long (GET /v1/budget reads it).
PERIOD_SLACK = 86400.0
# One worker rebuilds a lost counter from the ledger; the others skip it for
# this long (seconds), then a counter still missing is rebuilt again.
REBUILD_EVERY = 60.0
_STATE = "budget"


# -- periods (pure) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    id: str  # part of the storage key: "2026-11-26", "2026-W48", "2026-11", "all"
    start: float | None  # epoch seconds, UTC
    end: float | None


def period_of(ts: float, period: str) -> Period:
    """The budget period (daily, weekly from Monday, monthly; UTC) holding `ts`."""
    if period == "never":
        return Period("all", None, None)
    dt = datetime.fromtimestamp(ts, UTC)
    day = datetime(dt.year, dt.month, dt.day, tzinfo=UTC)
    if period == "daily":
        start, end = day, day + timedelta(days=1)
        pid = start.strftime("%Y-%m-%d")
    elif period == "weekly":
        start = day - timedelta(days=dt.weekday())
        end = start + timedelta(days=7)
        year, week, _ = start.isocalendar()
        pid = f"{year}-W{week:02d}"
    elif period == "monthly":
        start = datetime(dt.year, dt.month, 1, tzinfo=UTC)
        end = datetime(dt.year + dt.month // 12, dt.month % 12 + 1, 1, tzinfo=UTC)
        pid = start.strftime("%Y-%m")
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return Period(pid, start.timestamp(), end.timestamp())


def usd_to_nanos(usd: float) -> int:
    return round(usd * NANOS_PER_USD)


# -- the extension ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    """A key's budget in the current period (what GET /v1/budget shows)."""

    key: str
    budget_nanos: int
    spent_nanos: int
    period: str
    period_id: str
    start: float | None
    end: float | None

    def as_dict(self) -> dict[str, Any]:
        remaining = max(0, self.budget_nanos - self.spent_nanos)
        return {
            "key": self.key,
            "budget": self.budget_nanos / NANOS_PER_USD,
            "spent": self.spent_nanos / NANOS_PER_USD,
            "remaining": remaining / NANOS_PER_USD,
            "budget_nanos": self.budget_nanos,
            "spent_nanos": self.spent_nanos,
            "remaining_nanos": remaining,
            "period": self.period,
            "period_start": _iso(self.start),
            "resets_at": _iso(self.end),
        }


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Budget(Extension):
    name = "budget"

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        clock: Callable[[], float],
        db: Database | None = None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.db = db  # the usage ledger lost counters are rebuilt from
        section = config.extensions.budget
        self.default = section.default_budget if section else None
        self.period = section.period if section else "never"
        self.per_key = {k: v.budget for k, v in section.keys.items()} if section else {}
        self.fail_open = section.fail_open if section else False
        self.refuse_unpriced = section.unpriced == "refuse" if section else True

    def budget_for(self, principal: Principal) -> float | None:
        """USD: [extensions.budget.keys.NAME], else the key's own, else the default."""
        name = key_name(principal)
        if name in self.per_key:
            return self.per_key[name]
        own = key_limit(self.config, principal, "budget")
        return own if own is not None else self.default

    def _counter(self, key: str, period: Period) -> str:
        return f"budget:{period.id}:{key}"

    def _ttl(self, period: Period, now: float) -> float | None:
        return None if period.end is None else period.end - now + PERIOD_SLACK

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        budget = self.budget_for(ctx.principal)
        if budget is None:
            return
        self._check_priced(ctx)
        key = key_name(ctx.principal)
        period = period_of(ctx.timestamp, self.period)
        counter = self._counter(key, period)
        reserve = reserved_of(ctx).cost_nanos
        limit = usd_to_nanos(budget)
        ttl = self._ttl(period, ctx.timestamp)

        def reserve_or_refuse() -> None:
            held = Reservation("budget", self.storage, counter, reserve, ttl)
            # Refused, or the rebuild failed: the block gives the amount back.
            with held:
                total = held.take()
                if total <= reserve:
                    # The counter stood at zero, or was lost (below zero when a
                    # request in flight across the loss settled into a new one).
                    total += self._rebuild(ctx.principal, counter, period, ttl)
                if total > limit:
                    raise QuotaExceededError(
                        _refusal(key, total - reserve, reserve, budget, self.period)
                    )
            ctx.state[_STATE] = held

        guarded("budget", self.fail_open, reserve_or_refuse, None)

    def _check_priced(self, ctx: RequestContext) -> None:
        """A model without a price costs $0, so a budget could not limit it."""
        if not self.refuse_unpriced or ctx.endpoint in reservation.FREE_ENDPOINTS:
            return
        if not pricing.is_priced(ctx.model, self.config):
            raise PermissionDeniedError(
                f"model '{ctx.model}' has no price, so this key's budget cannot "
                f'apply to it; the operator can set [pricing."{ctx.model}"] or '
                '[extensions.budget] unpriced = "allow"',
                param="model",
            )

    def _rebuild(
        self, principal: Principal, counter: str, period: Period, ttl: float | None
    ) -> int:
        """Add the period's spend from the usage ledger to a counter at zero.

        A zero counter is either new (the ledger holds nothing either) or lost
        with the storage. One worker in REBUILD_EVERY seconds reads the ledger;
        it lags by what workers have not flushed yet (about one flush_interval).
        """
        if self.db is None:
            return 0
        if self.storage.incr(f"{counter}:rebuilt", 1, REBUILD_EVERY) != 1:
            return 0
        try:
            rows = self.db.usage_totals(
                key_name=principal.name, since=period.start, until=period.end
            )
        except (peewee.PeeweeException, OSError) as exc:
            log.warning("budget: usage ledger unavailable, not rebuilt: %s", exc)
            return 0
        spent = sum(r["cost_nanos"] for r in rows)
        if spent:
            self.storage.incr(counter, spent, ttl)
            log.warning(
                "budget: counter %s was missing; rebuilt from the usage ledger",
                counter,
            )
        return spent

    def _settle(self, ctx: RequestContext) -> None:
        """Turn the reservation into the charge (a refund for a failure)."""
        settle(ctx, _STATE, charge_of(ctx).cost_nanos)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self._settle(ctx)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        # Accounting charged nothing, or the estimate when the provider bills it.
        self._settle(ctx)

    def standing(
        self, principal: Principal, now: float | None = None
    ) -> Standing | None:
        """The key's budget, spent and period now; None when it has no budget."""
        budget = self.budget_for(principal)
        if budget is None:
            return None
        key = key_name(principal)
        now = self.clock() if now is None else now
        period = period_of(now, self.period)
        counter = self._counter(key, period)
        spent = int(self.storage.get(counter) or 0)
        if spent <= 0:
            spent += self._rebuild(principal, counter, period, self._ttl(period, now))
        return Standing(
            key,
            usd_to_nanos(budget),
            spent,
            self.period,
            period.id,
            period.start,
            period.end,
        )


def _refusal(key: str, spent: int, reserve: int, budget: float, period: str) -> str:
    where = "" if period == "never" else f" ({period})"
    return (
        f"You exceeded your current quota: key '{key}' has spent "
        f"${spent / NANOS_PER_USD:.6f} of its ${budget:.2f} budget{where}, and "
        f"this request may cost up to ${reserve / NANOS_PER_USD:.6f} "
        "(a lower max_tokens reserves less)."
    )
