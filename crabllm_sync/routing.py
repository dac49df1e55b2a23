"""Deployments of each model, the weighted pick, and the one retry loop.

Routing knows nothing of wire formats: it orders deployments and calls `fn`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from crabllm_sync.config import Config
from crabllm_sync.errors import (
    AllDeploymentsFailedError,
    GatewayError,
    ModelNotFoundError,
    UpstreamError,
    UpstreamTimeoutError,
)

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
                        timeout=p.timeout,
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
) -> tuple[T, Deployment]:
    """Call `fn` on each deployment in order, retrying transient failures.

    A non-transient error (a provider's 4xx) is raised at once. When every
    deployment is spent, AllDeploymentsFailedError says what was tried.
    """
    failures: list[tuple[Deployment, GatewayError]] = []
    for dep in deployments:
        for attempt in range(dep.max_retries + 1):
            try:
                return fn(dep), dep
            except GatewayError as err:
                if not err.is_transient:
                    raise
                failures.append((dep, err))
                if attempt >= dep.max_retries:
                    break
                delay = backoff(attempt, rng)
                retry_after = getattr(err, "retry_after", None)
                if retry_after is not None:
                    if retry_after > MAX_RETRY_AFTER:
                        break
                    delay = max(delay, retry_after)
                log.warning(
                    "retrying %s on %s after %s (attempt %d)",
                    model or dep.model,
                    dep.provider,
                    err.message,
                    attempt + 1,
                )
                sleep(delay)
        if dep is not deployments[-1]:
            log.warning("falling back from %s for %s", dep.provider, model or dep.model)
    raise exhausted(model, failures)


def exhausted(
    model: str, failures: Sequence[tuple[Deployment, GatewayError]]
) -> AllDeploymentsFailedError:
    """The final error once every deployment failed: 504, 503 or 502 by outcome."""
    errors = [e for _, e in failures]
    if errors and all(isinstance(e, UpstreamTimeoutError) for e in errors):
        status = 504
    elif errors and all(_is_rate_limited(e) for e in errors):
        status = 503
    else:
        status = 502
    tried = ", ".join(f"{d.provider} ({_brief(e)})" for d, e in failures)
    retry_after = None
    if status == 503:
        hints = [getattr(e, "retry_after", None) for e in errors]
        retry_after = min((h for h in hints if h is not None), default=1.0)
    err = AllDeploymentsFailedError(
        f"every deployment of '{model}' failed: {tried}"
        if tried
        else f"no deployment of '{model}' is available",
        http_status=status,
        retry_after=retry_after,
    )
    if retry_after is not None:
        err.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return err


def _is_rate_limited(err: GatewayError) -> bool:
    if isinstance(err, UpstreamError):
        return err.upstream_status == 429
    return err.status in (429, 503)  # our own limit or a cooling deployment


def _brief(err: GatewayError) -> str:
    if isinstance(err, UpstreamTimeoutError):
        return "timed out"
    status = getattr(err, "upstream_status", None)
    prefix = f"HTTP {status}: " if status else ""
    msg = err.message
    return prefix + (msg if len(msg) <= 120 else msg[:117] + "...")
