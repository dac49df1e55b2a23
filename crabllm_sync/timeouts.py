"""How long one attempt may take: the deployment's timeout (the provider's
`timeout`, or the model's entry in `model_timeouts`, set by routing.Registry),
or the request's `x-crabllm-timeout` header (bounded by config). Pure.

Long generations (reasoning models, long outputs) need a longer read timeout
than the provider's default; a client that knows it asks for one per request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from crabllm_sync.config import RoutingConfig
from crabllm_sync.errors import InvalidRequestError
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment

HEADER = "x-crabllm-timeout"


def requested_timeout(
    headers: Mapping[str, str], routing: RoutingConfig
) -> float | None:
    """Seconds asked for in the x-crabllm-timeout header, None when absent.

    A value that is not a positive number, or is over `[routing]
    max_request_timeout`, is the client's error (400 naming the header).
    """
    raw = headers.get(HEADER)
    if raw is None:
        return None
    limit = routing.max_request_timeout
    try:
        seconds = float(raw.strip())
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds <= limit:  # also false for nan and inf
        raise InvalidRequestError(
            f"{HEADER} must be a number of seconds above 0 and at most "
            f"{limit:g} (the configured maximum); got {raw[:40]!r}",
            param=HEADER,
        )
    return seconds


def effective_timeout(dep: Deployment, requested: float | None) -> tuple[float, float]:
    """(connect, read) seconds for one attempt on `dep`: the request's own
    timeout when it set one, else the deployment's; connect at most 10 s."""
    return http.timeouts(dep.timeout if requested is None else requested)


def with_timeout(
    deps: Sequence[Deployment], requested: float | None
) -> list[Deployment]:
    """The deployments with the request's own read timeout applied."""
    if requested is None:
        return list(deps)
    return [replace(d, timeout=effective_timeout(d, requested)[1]) for d in deps]


def deadline_seconds(routing: RoutingConfig, requested: float | None) -> float:
    """How long a non-streamed request may take in all: `request_deadline`,
    or the request's own timeout when it asked for a longer one (so it gets at
    least one full try)."""
    return max(routing.request_deadline, requested or 0.0)
