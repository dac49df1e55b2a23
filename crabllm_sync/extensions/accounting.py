"""The charge of each request (normalised usage and cost), computed once.

Runs first, so budget, rate limits, metrics, usage and logging all read the
same figures: ctx.state["reserved"] (the most the request may cost, before it
is sent) and ctx.state["charge"] (what it cost). A cache hit and a failure
cost nothing, except a failure the provider bills (`billable`, a read timeout
after the request was sent): that is charged at the reserved estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crabllm_sync import pricing, reservation
from crabllm_sync.config import Config
from crabllm_sync.extensions import Extension
from crabllm_sync.pricing import Price, Usage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

STATE = "charge"
RESERVED = "reserved"
# Priced per image, speech character or audio second (pricing.Usage media units).
MEDIA_ENDPOINTS = frozenset({"images", "speech", "transcription", "translation"})
_CHARS = "accounting.chars"


@dataclass(frozen=True, slots=True)
class Charge:
    usage: Usage
    cost_nanos: int


NO_CHARGE = Charge(Usage(), 0)


def charge_of(ctx: RequestContext) -> Charge:
    """The request's charge (NO_CHARGE before on_response or after a failure)."""
    return ctx.state.get(STATE, NO_CHARGE)


def reserved_of(ctx: RequestContext) -> Charge:
    """The most the request may cost (NO_CHARGE before on_request)."""
    return ctx.state.get(RESERVED, NO_CHARGE)


def is_billable(error: GatewayError) -> bool:
    """The provider may bill this failure (it timed out after the request was sent)."""
    return bool(getattr(error, "billable", False))


class Accounting(Extension):
    name = "accounting"

    def __init__(self, config: Config) -> None:
        self.config = config
        self._prices: dict[str, Price] = {}

    def price(self, model: str) -> Price:
        p = self._prices.get(model)
        if p is None:
            p = pricing.lookup(model, self.config.pricing)
            self._prices[model] = p
        return p

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        cap = reservation.max_output_tokens(ctx.model, self.config)
        usage = reservation.requested_usage(body, ctx.endpoint, cap)
        ctx.state[RESERVED] = Charge(usage, pricing.cost(usage, self.price(ctx.model)))

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        # Kept in case the stream ends without a usage chunk (estimate from it).
        ctx.state[_CHARS] = ctx.state.get(_CHARS, 0) + pricing.chunk_chars(chunk)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        if ctx.cache_hit:
            ctx.state[STATE] = NO_CHARGE
            return
        usage = pricing.normalise(ctx.usage)
        if usage is None and ctx.endpoint in MEDIA_ENDPOINTS:
            # No count from upstream (a transcription asked for as text, srt
            # or vtt carries no duration); text length says nothing here.
            usage = Usage(estimated=True)
        elif usage is None:
            chars = (
                ctx.state.get(_CHARS, 0)
                if response is None
                else pricing.response_chars(response)
            )
            out = 0 if ctx.endpoint == "embeddings" else None
            usage = pricing.estimate(body, chars, output_tokens=out)
        ctx.state[STATE] = Charge(usage, pricing.cost(usage, self.price(ctx.model)))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        ctx.state[STATE] = reserved_of(ctx) if is_billable(error) else NO_CHARGE
