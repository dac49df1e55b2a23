"""USD budgets per key and period, reserved before dispatch and settled after.

The period a request falls in is computed from its timestamp (UTC), so a
reset needs no cron job. Spent money is an integer nanodollar counter on the
shared storage: reserve an estimate (atomic incr), refuse when the counter
already stood at or over the budget, settle to the actual cost afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from crabllm_sync import pricing
from crabllm_sync.config import Config
from crabllm_sync.errors import QuotaExceededError
from crabllm_sync.extensions import Extension, guarded, key_limit, key_name, quietly
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.pricing import NANOS_PER_USD, Usage
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.auth import Principal
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

# Output tokens reserved for a chat request that sets no max_tokens.
DEFAULT_OUTPUT_ESTIMATE = 256
# A period's counter outlives the period by this long (GET /v1/budget reads it).
PERIOD_SLACK = 86400.0
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


def reservation(body: dict[str, Any], endpoint: str, price: pricing.Price) -> int:
    """The cost to reserve before dispatch: the prompt plus the output cap."""
    limit = (
        body.get("max_completion_tokens")
        or body.get("max_tokens")
        or body.get("max_output_tokens")  # a Responses API body (native)
    )
    if endpoint == "embeddings":
        output = 0
    elif isinstance(limit, int) and limit > 0:
        output = limit
    else:
        output = DEFAULT_OUTPUT_ESTIMATE
    usage = Usage(
        input=pricing.estimate_tokens(pricing.request_chars(body)), output=output
    )
    return pricing.cost(usage, price)


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
        self, config: Config, storage: Storage, *, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        section = config.extensions.budget
        self.default = section.default_budget if section else None
        self.period = section.period if section else "never"
        self.per_key = {k: v.budget for k, v in section.keys.items()} if section else {}
        self.fail_open = section.fail_open if section else False
        self._prices: dict[str, pricing.Price] = {}

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

    def _price(self, model: str) -> pricing.Price:
        p = self._prices.get(model)
        if p is None:
            p = self._prices[model] = pricing.lookup(model, self.config.pricing)
        return p

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        budget = self.budget_for(ctx.principal)
        if budget is None:
            return
        key = key_name(ctx.principal)
        period = period_of(ctx.timestamp, self.period)
        counter = self._counter(key, period)
        reserve = reservation(body, ctx.endpoint, self._price(ctx.model))
        limit = usd_to_nanos(budget)
        ttl = self._ttl(period, ctx.timestamp)

        def reserve_or_refuse() -> None:
            total = self.storage.incr(counter, reserve, ttl)
            before = total - reserve
            if before >= limit:
                if reserve:
                    self.storage.incr(counter, -reserve, ttl)
                raise QuotaExceededError(
                    f"You exceeded your current quota: key '{key}' has spent "
                    f"${before / NANOS_PER_USD:.6f} of its ${budget:.2f} budget"
                    + ("" if period.end is None else f" ({self.period})")
                    + "."
                )
            ctx.state[_STATE] = (counter, reserve, ttl)

        guarded("budget", self.fail_open, reserve_or_refuse, None)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        held = ctx.state.pop(_STATE, None)
        if held is None:
            return
        counter, reserve, ttl = held
        delta = charge_of(ctx).cost_nanos - reserve
        if delta:
            quietly("budget", lambda: self.storage.incr(counter, delta, ttl))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        held = ctx.state.pop(_STATE, None)
        if held is None:
            return
        counter, reserve, ttl = held
        if reserve:
            quietly("budget", lambda: self.storage.incr(counter, -reserve, ttl))

    def standing(
        self, principal: Principal, now: float | None = None
    ) -> Standing | None:
        """The key's budget, spent and period now; None when it has no budget."""
        budget = self.budget_for(principal)
        if budget is None:
            return None
        key = key_name(principal)
        period = period_of(self.clock() if now is None else now, self.period)
        spent = int(self.storage.get(self._counter(key, period)) or 0)
        return Standing(
            key,
            usd_to_nanos(budget),
            spent,
            self.period,
            period.id,
            period.start,
            period.end,
        )
