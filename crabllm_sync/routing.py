"""Deployments of each model, the weighted pick, and the one retry loop.

Routing knows nothing of wire formats: it orders deployments and calls `fn`.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from crabllm_sync.config import Config
from crabllm_sync.errors import (
    MIN_SECRET,
    AllDeploymentsFailedError,
    GatewayError,
    ModelNotFoundError,
    UnsupportedError,
    UpstreamError,
    UpstreamTimeoutError,
)
from crabllm_sync.health import Health, unguarded

log = logging.getLogger(__name__)

T = TypeVar("T")

BACKOFF_BASE = 0.1  # seconds; doubles per attempt, jittered into [b/2, b]
MAX_RETRY_AFTER = 5.0  # a provider's Retry-After longer than this moves on instead


@dataclass(frozen=True, slots=True)
class Deployment:
    """One provider serving one model: everything needed to call it."""

    provider: str
    kind: str
    model: str
    base_url: str
    api_key: str = ""
    weight: float = 1.0
    max_retries: int = 2
    timeout: float = 30.0
    api_version: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credentials a provider might repeat in an error message."""
        values = (self.api_key, self.access_key or "", self.secret_key or "")
        return tuple(v for v in values if len(v) >= MIN_SECRET)


class Registry:
    """Model name -> deployments, with single-hop aliases."""

    def __init__(self, config: Config, base_urls: dict[str, str | None]) -> None:
        self.aliases = dict(config.aliases)
        self.models: dict[str, list[Deployment]] = {}
        for name, p in config.providers.items():
            base = (p.base_url or base_urls.get(p.kind) or "").rstrip("/")
            for model in p.models:
                self.models.setdefault(model, []).append(
                    Deployment(
                        provider=name,
                        kind=p.kind,
                        model=model,
                        base_url=base,
                        api_key=p.api_key,
                        weight=p.weight,
                        max_retries=p.max_retries,
                        timeout=p.model_timeouts.get(model, p.timeout),
                        api_version=p.api_version,
                        region=p.region,
                        access_key=p.access_key,
                        secret_key=p.secret_key,
                    )
                )

    def resolve(self, name: str) -> str:
        """The canonical model for a requested name; ModelNotFoundError if none."""
        model = self.aliases.get(name, name)
        if model not in self.models:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist or is not configured", param="model"
            )
        return model

    def names(self) -> list[str]:
        """Every model and alias a client may ask for."""
        return sorted(set(self.models) | set(self.aliases))

    def candidates(self, model: str, rng: random.Random) -> list[Deployment]:
        """The weighted pick first, then the rest by descending weight (fallback)."""
        return weighted_order(self.models[model], rng)


def weighted_order(deps: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """One weighted random choice, followed by the others heaviest first."""
    if len(deps) <= 1:
        return list(deps)
    total = sum(d.weight for d in deps)
    if total <= 0:
        first = 0
    else:
        point = rng.random() * total
        first = len(deps) - 1
        for i, d in enumerate(deps):
            point -= d.weight
            if point < 0:
                first = i
                break
    rest = sorted(
        (d for i, d in enumerate(deps) if i != first), key=lambda d: -d.weight
    )
    return [deps[first], *rest]


def backoff(attempt: int, rng: random.Random) -> float:
    """Jittered exponential backoff for retry number `attempt` (0-based)."""
    b = BACKOFF_BASE * (2**attempt)
    return rng.uniform(b / 2, b)


def call_with_retries(
    deployments: Sequence[Deployment],
    fn: Callable[[Deployment], T],
    *,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
    model: str = "",
    health: Health | None = None,
    deadline: float | None = None,
    now: Callable[[], float] = time.monotonic,
) -> tuple[T, Deployment]:
    """Call `fn` on each deployment in order, retrying transient failures.

    A non-transient error (a provider's 4xx, or a read timeout: the provider
    may still be generating, so it is neither retried nor counted by the
    breaker) is raised at once. An
    UnsupportedError (this deployment's provider cannot honour the request,
    refused before any network call) moves on to the next deployment: it is
    neither retried nor a failure for the breaker, and when every deployment
    refused, the first refusal is raised (a 400). A deployment whose breaker
    is open is skipped; a half-open one gets a single probe. Past `deadline`
    (a `now()` value) nothing more is tried, and each attempt's timeout is cut
    to the time left. When every deployment is spent,
    AllDeploymentsFailedError says what was tried.
    """
    failures: list[tuple[Deployment, GatewayError]] = []
    cooling: list[tuple[Deployment, float]] = []
    refusals: list[UnsupportedError] = []
    for dep in deployments:
        ticket = health.ticket(dep) if health is not None else unguarded(dep)
        if not ticket.allowed:
            cooling.append((dep, ticket.retry_after))
            log.warning("skipping %s for %s: cooling down", dep.provider, dep.model)
            continue
        tries = 1 if ticket.is_probe else dep.max_retries + 1
        # Leaving this block without a verdict gives a probe back.
        with ticket:
            for attempt in range(tries):
                left = None if deadline is None else deadline - now()
                if left is not None and left <= 0:
                    raise exhausted(model, failures, cooling, deadline_passed=True)
                target = dep
                if left is not None and left < dep.timeout:
                    target = replace(dep, timeout=left)
                try:
                    result = fn(target)
                except UnsupportedError as err:
                    ticket.released()
                    refusals.append(err)
                    log.info(
                        "%s cannot serve this request: %s", dep.provider, err.message
                    )
                    break
                except GatewayError as err:
                    # Before the message is logged, shortened or shown to anyone.
                    err.redact(dep.secrets)
                    # A timeout we imposed (deadline) says nothing about the provider.
                    cut_short = target is not dep and isinstance(
                        err, UpstreamTimeoutError
                    )
                    if cut_short and err.billable:
                        ticket.released()
                        failures.append((dep, err))
                        raise exhausted(
                            model,
                            failures,
                            cooling,
                            deadline_passed=True,
                            billable=True,
                        ) from None
                    if not err.is_transient:
                        ticket.released()
                        raise
                    failures.append((dep, err))
                    if not cut_short and ticket.failed():
                        break
                    if attempt + 1 >= tries:
                        break
                    delay = backoff(attempt, rng)
                    retry_after = getattr(err, "retry_after", None)
                    if retry_after is not None:
                        if retry_after > MAX_RETRY_AFTER:
                            break
                        delay = max(delay, retry_after)
                    if deadline is not None and now() + delay >= deadline:
                        raise exhausted(
                            model, failures, cooling, deadline_passed=True
                        ) from None
                    log.warning(
                        "retrying %s on %s after %s (attempt %d)",
                        model or dep.model,
                        dep.provider,
                        err.message,
                        attempt + 1,
                    )
                    sleep(delay)
                    continue
                ticket.succeeded()
                return result, dep
        if dep is not deployments[-1]:
            log.warning("falling back from %s for %s", dep.provider, model or dep.model)
    if refusals and not failures and not cooling:
        raise refusals[0]
    raise exhausted(model, failures, cooling)


def exhausted(
    model: str,
    failures: Sequence[tuple[Deployment, GatewayError]],
    cooling: Sequence[tuple[Deployment, float]] = (),
    *,
    deadline_passed: bool = False,
    billable: bool = False,
) -> AllDeploymentsFailedError:
    """The final error once nothing is left to try.

    504 when the deadline passed or every attempt timed out; 503 with
    Retry-After when every attempt was rate limited or every deployment is
    cooling down; otherwise 502. The message names each deployment tried
    (provider names, never keys) and how it failed. `billable`: the last
    attempt was sent and may still be generating (see UpstreamReadTimeoutError).
    """
    errors = [e for _, e in failures]
    if deadline_passed:
        status = 504
    elif not errors:
        status = 503  # nothing was called: every deployment is cooling down
    elif all(isinstance(e, UpstreamTimeoutError) for e in errors):
        status = 504
    elif all(_is_rate_limited(e) for e in errors):
        status = 503
    else:
        status = 502
    retry_after = None
    if status == 503:
        hints = [getattr(e, "retry_after", None) for e in errors]
        hints += [seconds for _, seconds in cooling]
        retry_after = min((h for h in hints if h is not None), default=1.0)
    tried = _tried(failures, cooling)
    if deadline_passed:
        message = f"the request deadline passed before '{model}' answered"
        message += f": {tried}" if tried else ""
    elif errors:
        message = f"every deployment of '{model}' failed: {tried}"
    else:
        message = f"no deployment of '{model}' is available: {tried}"
    err = AllDeploymentsFailedError(
        message, http_status=status, retry_after=retry_after, billable=billable
    )
    if retry_after is not None:
        err.headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return err


def _tried(
    failures: Sequence[tuple[Deployment, GatewayError]],
    cooling: Sequence[tuple[Deployment, float]],
) -> str:
    """'a (3 attempts, last: HTTP 500: boom), b (cooling down)', in the order tried."""
    parts: list[str] = []
    counts: dict[str, int] = {}
    last: dict[str, GatewayError] = {}
    order: list[str] = []
    for dep, err in failures:
        if dep.provider not in counts:
            order.append(dep.provider)
        counts[dep.provider] = counts.get(dep.provider, 0) + 1
        last[dep.provider] = err
    for name in order:
        n = counts[name]
        what = _brief(last[name], name)
        parts.append(
            f"{name} ({n} attempts, last: {what})" if n > 1 else f"{name} ({what})"
        )
    for dep, seconds in cooling:
        parts.append(
            f"{dep.provider} (cooling down, retry in {max(1, math.ceil(seconds))}s)"
        )
    return ", ".join(parts)


def _is_rate_limited(err: GatewayError) -> bool:
    if isinstance(err, UpstreamError):
        return err.upstream_status == 429
    return err.status in (429, 503)  # our own limit or a cooling deployment


def _brief(err: GatewayError, provider: str) -> str:
    if isinstance(err, UpstreamTimeoutError):
        return "timed out"
    status = getattr(err, "upstream_status", None)
    prefix = f"HTTP {status}: " if status else ""
    msg = err.message.removeprefix(f"{provider}: ")  # the name is said once
    return prefix + (msg if len(msg) <= 120 else msg[:117] + "...")
