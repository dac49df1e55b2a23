"""The charge of each request (normalised usage and cost), computed once.

Runs first, so budget, metrics, usage and logging all read the same figures
from ctx.state["charge"]. A cache hit and a failure cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crabllm_sync import pricing
from crabllm_sync.config import Config
from crabllm_sync.extensions import Extension
from crabllm_sync.pricing import Price, Usage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

STATE = "charge"
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
        ctx.state[STATE] = NO_CHARGE
