"""Deployment health: one circuit breaker per deployment, kept in Storage.

Every gunicorn worker reads and writes the same keys, so a dead provider is
skipped by all of them. Time comes in as `clock`; storage trouble fails open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

from crabllm_sync.config import RoutingConfig
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.routing import Deployment

log = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"
UNKNOWN = "unknown"  # storage could not be read

PREFIX = "health:"
WARN_EVERY = 10.0  # seconds between "storage is failing" warnings
# Seconds a worker trusts a read that found no failures before reading again.
# A healthy deployment then costs no storage round trip per request; failures
# counted by another worker are seen within this time (this worker's own at once).
FRESH_FOR = 1.0


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a deployment may be called now, and what the caller must report."""

    allowed: bool
    is_probe: bool = False  # the one request testing a deployment after cooling
    had_failures: bool = False  # a success must reset the failure count
    retry_after: float = 0.0  # seconds until it may be tried (when not allowed)


ALLOWED = Admission(allowed=True)


class Ticket:
    """One request's admission to one deployment, for the attempts made on it.

    The attempts report through it as they would to Health: succeeded(),
    failed() (each transient failure) or released() (no verdict: a client's
    4xx, a refusal, a timeout we imposed). A context manager: leaving the
    block with a probe that no report ended gives the probe back, so no way
    out of the attempts (an exception routing does not catch, a cancelled
    greenlet) keeps a cooled deployment's one probe until its lease expires.
    """

    __slots__ = ("_health", "_probing", "admission", "dep")

    def __init__(
        self, health: Health | None, dep: Deployment, admission: Admission
    ) -> None:
        self._health = health
        self.dep = dep
        self.admission = admission
        # True while this request holds the deployment's probe.
        self._probing = health is not None and admission.is_probe

    @property
    def allowed(self) -> bool:
        return self.admission.allowed

    @property
    def is_probe(self) -> bool:
        return self.admission.is_probe

    @property
    def retry_after(self) -> float:
        return self.admission.retry_after

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._probing:
            self.released()

    def succeeded(self) -> None:
        if self._health is not None:
            self._probing = False
            self._health.succeeded(self.dep, self.admission)

    def failed(self) -> bool:
        """Count a transient failure; True when the deployment now cools down."""
        if self._health is None:
            return False
        self._probing = False
        return self._health.failed(self.dep, self.admission)

    def released(self) -> None:
        """The call ended without a verdict: give the probe back (once)."""
        if self._probing:
            self._probing = False
            self._health.released(self.dep, self.admission)  # type: ignore[union-attr]


def unguarded(dep: Deployment) -> Ticket:
    """The ticket of a call made without the breaker (count_tokens)."""
    return Ticket(None, dep, ALLOWED)


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One row of /health?detail=1 (and of metrics)."""

    provider: str
    model: str
    state: str
    consecutive_failures: int
    cooling_until: float | None  # wall-clock seconds


class Health:
    """Circuit breakers over Storage keys `health:<provider>:<model>:<field>`.

    `fails` counts consecutive transient failures; at `failure_threshold` the
    breaker opens and `until` holds the end of cooling (wall clock, so every
    worker agrees). After that the first caller to win `incr(probe)` probes;
    only its success deletes the keys (closed). `cooldown_seconds = 0` turns
    the breaker off.
    """

    def __init__(
        self,
        storage: Storage,
        config: RoutingConfig,
        *,
        deployments: Sequence[Deployment] = (),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        fresh_for: float = FRESH_FOR,
    ) -> None:
        self.storage = storage
        self.cooldown = config.cooldown_seconds
        self.threshold = config.failure_threshold
        self.deployments = list(deployments)
        self.clock = clock
        self.monotonic = monotonic
        self.fresh_for = fresh_for
        self._warned_at = float("-inf")
        # (provider, model) -> monotonic time until which no failures is trusted
        self._healthy_until: dict[tuple[str, str], float] = {}

    @property
    def is_enabled(self) -> bool:
        return self.cooldown > 0

    # -- the request path ------------------------------------------------------

    def ticket(self, dep: Deployment) -> Ticket:
        """admit(dep), as the ticket the attempts on `dep` report through."""
        return Ticket(self, dep, self.admit(dep))

    def admit(self, dep: Deployment) -> Admission:
        """May `dep` be called now? Fails open (allowed) when storage fails."""
        if not self.is_enabled:
            return ALLOWED
        memo = (dep.provider, dep.model)
        if self._healthy_until.get(memo, 0.0) > self.monotonic():
            return ALLOWED
        try:
            fails = _int(self.storage.get(_key(dep, "fails")))
            if fails < self.threshold:
                if fails == 0:
                    self._healthy_until[memo] = self.monotonic() + self.fresh_for
                return Admission(allowed=True, had_failures=fails > 0)
            now = self.clock()
            until = _float(self.storage.get(_key(dep, "until")))
            if until is not None and until > now:
                return Admission(allowed=False, retry_after=until - now)
            # Cooling is over (or its end was lost): one caller probes.
            lease = dep.timeout + min(dep.timeout, 10.0) + 1.0
            if self.storage.incr(_key(dep, "probe"), 1, ttl=lease) == 1:
                return Admission(allowed=True, is_probe=True, had_failures=True)
            return Admission(allowed=False, retry_after=1.0)
        except Exception as exc:  # each backend raises its own errors: fail open
            self._storage_failed("check", dep, exc)
            return ALLOWED

    def succeeded(self, dep: Deployment, admission: Admission) -> None:
        """A call answered: close the breaker if it had counted failures."""
        if not (admission.had_failures or admission.is_probe):
            return
        try:
            self.storage.delete(_key(dep, "fails"))
            self.storage.delete(_key(dep, "until"))
            self.storage.delete(_key(dep, "probe"))
        except Exception as exc:  # each backend raises its own errors: fail open
            self._storage_failed("reset", dep, exc)
        if admission.is_probe:
            log.warning("%s for %s is healthy again", dep.provider, dep.model)

    def failed(self, dep: Deployment, admission: Admission) -> bool:
        """Count a transient failure; True when `dep` is now cooling down."""
        if not self.is_enabled:
            return False
        self._healthy_until.pop((dep.provider, dep.model), None)
        try:
            if not admission.is_probe:
                fails = self.storage.incr(_key(dep, "fails"), 1)
                if fails < self.threshold:
                    return False
            until = self.clock() + self.cooldown
            self.storage.set(_key(dep, "until"), repr(until).encode())
            if admission.is_probe:
                self.storage.delete(_key(dep, "probe"))
        except Exception as exc:  # each backend raises its own errors: fail open
            self._storage_failed("count", dep, exc)
            return False
        log.warning(
            "%s for %s is cooling down for %ss",
            dep.provider,
            dep.model,
            _seconds(self.cooldown),
        )
        return True

    def released(self, dep: Deployment, admission: Admission) -> None:
        """The call ended without a verdict (the client's own 4xx): free the probe."""
        if not admission.is_probe:
            return
        try:
            self.storage.delete(_key(dep, "probe"))
        except Exception as exc:  # each backend raises its own errors: fail open
            self._storage_failed("release", dep, exc)

    # -- reporting ---------------------------------------------------------------

    def state(self, dep: Deployment) -> DeploymentHealth:
        """The breaker of one deployment as every worker sees it."""
        try:
            fails = _int(self.storage.get(_key(dep, "fails")))
            until = _float(self.storage.get(_key(dep, "until")))
        except Exception as exc:  # each backend raises its own errors
            self._storage_failed("read", dep, exc)
            return DeploymentHealth(dep.provider, dep.model, UNKNOWN, 0, None)
        if not self.is_enabled or fails < self.threshold:
            state, until = CLOSED, None
        elif until is not None and until > self.clock():
            state = OPEN
        else:
            state = HALF_OPEN
        return DeploymentHealth(dep.provider, dep.model, state, fails, until)

    def snapshot(self) -> list[DeploymentHealth]:
        """Every deployment's breaker, in config order."""
        return [self.state(dep) for dep in self.deployments]

    def _storage_failed(self, what: str, dep: Deployment, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            log.warning(
                "storage failed during the health %s of %s/%s (%s); "
                "treating it as healthy",
                what,
                dep.provider,
                dep.model,
                type(exc).__name__,
            )


def _key(dep: Deployment, field: str) -> str:
    # Model names may hold ':' or '/' (llama3:8b, org/model): quote both parts.
    return f"{PREFIX}{quote(dep.provider, safe='')}:{quote(dep.model, safe='')}:{field}"


def _int(raw: bytes | None) -> int:
    return int(raw) if raw else 0


def _float(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


def _seconds(value: float) -> str:
    return f"{value:g}"
