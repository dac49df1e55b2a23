"""Requests and tokens per minute per key, on the shared storage.

A sliding window approximated by two fixed one-minute windows: the previous
window's count weighted by how much of it still overlaps the last 60 s, plus
the current window's count (the window math below is pure).

Tokens are reserved up front (the request's estimate: prompt plus its output
cap, see reservation.py) so a burst is limited while it is in flight, then
settled to what the answer reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crabllm_sync.config import Config
from crabllm_sync.errors import RateLimitError
from crabllm_sync.extensions import Extension, guarded, key_limit, key_name
from crabllm_sync.extensions.accounting import charge_of, reserved_of
from crabllm_sync.extensions.held import Reservation, settle
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

WINDOW = 60.0  # seconds
KEY_TTL = 2 * WINDOW + 10  # a window's counter is read during the next one
_STATE = "rate_limit"
_TOKENS = "rate_limit.tokens"  # the Reservation of tokens in the current window


# -- window math (pure) -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """Counts of the previous and current fixed windows at `elapsed` s in."""

    prev: int
    curr: int
    elapsed: float
    length: float = WINDOW

    @property
    def count(self) -> float:
        """The sliding-window estimate of the last `length` seconds."""
        return self.prev * (1 - self.elapsed / self.length) + self.curr

    def seconds_until(self, target: float) -> float:
        """Seconds until `count` falls to `target` or below (no new traffic)."""
        if self.count <= target:
            return 0.0
        if self.curr <= target:
            # Within this window: prev * (1 - e/L) + curr <= target.
            at = self.length * (1 - (target - self.curr) / self.prev)
            return max(0.0, at - self.elapsed)
        # Next window: curr becomes prev, weighted down as that window passes.
        at = self.length * (1 - max(0.0, target) / self.curr)
        return (self.length - self.elapsed) + max(0.0, at)

    def seconds_until_empty(self) -> float:
        """Seconds until nothing counted now is in the window any more."""
        if self.curr > 0:
            return (self.length - self.elapsed) + self.length
        if self.prev > 0:
            return self.length - self.elapsed
        return 0.0


def window_index(now: float, length: float = WINDOW) -> tuple[int, float]:
    """The fixed window `now` falls in, and seconds since it began."""
    index = math.floor(now / length)
    return index, now - index * length


def duration(seconds: float) -> str:
    """Seconds as OpenAI writes them in x-ratelimit-reset-*: 20ms, 6s, 1m30s."""
    seconds = max(0.0, round(seconds, 3))
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    rest = round(rest, 3)
    if minutes:
        return f"{int(minutes)}m{rest:g}s"
    return f"{rest:g}s"


# -- the extension --------------------------------------------------------------


class RateLimit(Extension):
    """RPM counts admitted requests; TPM reserves tokens, then settles them."""

    name = "rate_limit"

    def __init__(
        self, config: Config, storage: Storage, *, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        section = config.extensions.rate_limit
        self.default_rpm = section.requests_per_minute if section else None
        self.default_tpm = section.tokens_per_minute if section else None
        self.fail_open = section.fail_open if section else False

    def limits(self, ctx: RequestContext) -> tuple[int | None, int | None]:
        rpm = key_limit(self.config, ctx.principal, "requests_per_minute")
        tpm = key_limit(self.config, ctx.principal, "tokens_per_minute")
        return (
            rpm if rpm is not None else self.default_rpm,
            tpm if tpm is not None else self.default_tpm,
        )

    def _window(self, kind: str, key: str, now: float) -> tuple[str, Window]:
        index, elapsed = window_index(now)
        prev = self.storage.get(f"rl:{kind}:{index - 1}:{key}")
        curr = self.storage.get(f"rl:{kind}:{index}:{key}")
        return f"rl:{kind}:{index}:{key}", Window(
            int(prev or 0), int(curr or 0), elapsed
        )

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        rpm, tpm = self.limits(ctx)
        if rpm is None and tpm is None:
            return
        key = key_name(ctx.principal)
        now = self.clock()
        ctx.state[_STATE] = key
        if tpm is not None:
            guarded(
                "rate_limit",
                self.fail_open,
                lambda: self._check_tokens(ctx, key, tpm, now),
                None,
            )
        if rpm is not None:
            guarded(
                "rate_limit",
                self.fail_open,
                lambda: self._admit(ctx, key, rpm, now),
                None,
            )

    def admit_request(self, ctx: RequestContext) -> None:
        """RPM only, for a request that generates nothing
        (GET /v1/usage, count_tokens).

        The x-ratelimit-* headers land in ctx.headers, and on a refusal in the
        error too (no on_error runs for these requests).
        """
        rpm = self.limits(ctx)[0]
        if rpm is None or ctx.principal.is_admin:  # the operator is no key
            return
        key = key_name(ctx.principal)
        try:
            guarded(
                "rate_limit",
                self.fail_open,
                lambda: self._admit(ctx, key, rpm, self.clock()),
                None,
            )
        except RateLimitError as err:
            for name, value in ctx.headers.items():
                err.headers.setdefault(name, value)
            raise

    def _check_tokens(
        self, ctx: RequestContext, key: str, limit: int, now: float
    ) -> None:
        # A request larger than the whole limit reserves the whole limit: it
        # runs alone in an empty window rather than never.
        reserve = min(reserved_of(ctx).usage.total_tokens, limit)
        index, elapsed = window_index(now)
        curr_key = f"rl:t:{index}:{key}"
        prev = int(self.storage.get(f"rl:t:{index - 1}:{key}") or 0)
        held = Reservation("rate_limit", self.storage, curr_key, reserve, KEY_TTL)
        # Refused: the block gives the tokens back.
        with held:
            curr = held.take()
            w = Window(prev, curr, elapsed)
            admitted = w.count <= limit if reserve else w.count < limit
            if not admitted:
                w = Window(prev, curr - reserve, elapsed)  # as it is once given back
            ctx.headers["x-ratelimit-limit-tokens"] = str(limit)
            ctx.headers["x-ratelimit-remaining-tokens"] = str(
                max(0, int(limit - w.count))
            )
            ctx.headers["x-ratelimit-reset-tokens"] = duration(w.seconds_until_empty())
            if not admitted:
                wait = w.seconds_until(max(0, limit - max(reserve, 1)))
                raise self._refuse(
                    ctx,
                    f"Rate limit reached for tokens per minute: limit {limit}, "
                    f"used {int(w.count)}, this request may use {reserve}. "
                    f"Try again in {duration(wait)}.",
                    wait,
                )
        ctx.state[_TOKENS] = held

    def _admit(self, ctx: RequestContext, key: str, limit: int, now: float) -> None:
        index, elapsed = window_index(now)
        curr_key = f"rl:r:{index}:{key}"
        prev = int(self.storage.get(f"rl:r:{index - 1}:{key}") or 0)
        curr = self.storage.incr(curr_key, 1, KEY_TTL)
        w = Window(prev, curr, elapsed)
        admitted = w.count <= limit
        if not admitted:
            # A refused request does not count: hammering does not extend a block.
            self.storage.incr(curr_key, -1, KEY_TTL)
            w = Window(prev, curr - 1, elapsed)
        ctx.headers["x-ratelimit-limit-requests"] = str(limit)
        ctx.headers["x-ratelimit-remaining-requests"] = str(
            max(0, math.floor(limit - w.count))
        )
        ctx.headers["x-ratelimit-reset-requests"] = duration(w.seconds_until_empty())
        if not admitted:
            wait = w.seconds_until(limit - 1)
            raise self._refuse(
                ctx,
                f"Rate limit reached for requests per minute: limit {limit}. "
                f"Try again in {duration(wait)}.",
                wait,
            )

    def _refuse(self, ctx: RequestContext, message: str, wait: float) -> RateLimitError:
        err = RateLimitError(message, retry_after=max(wait, 0.001))
        err.headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return err

    def _settle(self, ctx: RequestContext) -> None:
        """Turn the token reservation into what the request used."""
        used = charge_of(ctx).usage.total_tokens
        settle(ctx, _TOKENS, used)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self._settle(ctx)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self._settle(ctx)
        # The answer (a 429 from any extension, or an upstream error) carries
        # the counters too, as OpenAI's does.
        for name, value in ctx.headers.items():
            if name.startswith("x-ratelimit-"):
                error.headers.setdefault(name, value)
