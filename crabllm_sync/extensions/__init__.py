"""The Extension base (five no-op hooks) and build_extensions() in a fixed order.

Also the small helpers every extension shares: which key a request counts
against, that key's limits, and the storage-outage policy (fail open or 503).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from crabllm_sync.config import Config, KeyConfig
from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.auth import Principal
    from crabllm_sync.context import RequestContext
    from crabllm_sync.db import Database
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")

ANONYMOUS_KEY = "-"  # the counter scope of requests when auth is off


class Extension:
    """Hooks run around each request; override the ones you need."""

    name = "extension"

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """Before routing; raise a GatewayError to refuse the request."""

    def on_cache_lookup(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Return a stored response to answer without calling a provider."""
        return None

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        """Each streamed chunk, before it is sent."""

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        """Once per success; `response` is None for streams (ctx.usage is set)."""

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        """Once per failure, before the error is answered.

        Also runs for extensions whose on_request never ran (an earlier one
        refused), so undo only what ctx.state says this extension did.
        """

    def close(self) -> None:
        """At worker exit: flush what is buffered."""


def build_extensions(
    config: Config,
    storage: Storage,
    *,
    db: Database | None = None,
    clock: Callable[[], float] = time.time,
    redact: Callable[[str], str] | None = None,
) -> list[Extension]:
    """The extensions, in the order their hooks run.

    accounting (usage and cost of each request, computed once), metrics,
    rate_limit, concurrency, budget, cache, usage, audit (the request log,
    with a SQL database), logging. Limits refuse
    before anything is reserved; the cache answers only requests the limits
    let through; usage and logging see every outcome last.
    """
    from crabllm_sync.audit.store import AuditStore
    from crabllm_sync.extensions.accounting import Accounting
    from crabllm_sync.extensions.audit import AuditLog
    from crabllm_sync.extensions.budget import Budget
    from crabllm_sync.extensions.cache import Cache
    from crabllm_sync.extensions.concurrency import Concurrency
    from crabllm_sync.extensions.logging import RequestLog
    from crabllm_sync.extensions.metrics import MetricsExtension
    from crabllm_sync.extensions.rate_limit import RateLimit
    from crabllm_sync.extensions.usage import UsageRecorder, open_usage_database
    from crabllm_sync.metrics import Metrics

    ext = config.extensions
    if db is None:
        db = open_usage_database(config)
    out: list[Extension] = [
        Accounting(config),
        MetricsExtension(Metrics()),
        RateLimit(config, storage, clock=clock),
        Concurrency(config, storage),
        Budget(config, storage, clock=clock, db=db),
    ]
    if ext.cache is not None:
        out.append(Cache(ext.cache, storage))
    if db is not None:
        out.append(
            UsageRecorder(ext.usage, db, config.storage.usage_retention_days, clock)
        )
    if db is not None and (ext.audit is None or ext.audit.enabled):
        out.append(AuditLog(ext.audit, AuditStore(db), redact or (lambda s: s), clock))
    out.append(RequestLog(ext.logging))
    return out


def find(extensions: list[Extension], kind: type[T]) -> T | None:
    """The extension of class `kind`, if built."""
    for e in extensions:
        if isinstance(e, kind):
            return e
    return None


def key_name(principal: Principal) -> str:
    """The name a request counts against (never the secret)."""
    return principal.name or ANONYMOUS_KEY


def key_config(config: Config, name: str | None) -> KeyConfig | None:
    for k in config.keys:
        if k.name == name:
            return k
    return None


def key_limit(config: Config, principal: Principal, field: str) -> Any:
    """One of the key's own limits, or None.

    `field` is requests_per_minute, tokens_per_minute, budget or
    max_parallel_requests. Keys created at run time carry them on the
    Principal; keys from the config file have them in their [[keys]] entry.
    """
    value = getattr(principal, field, None)
    if value is None:
        limits = getattr(principal, "limits", None) or {}
        value = limits.get(field)
    if value is not None:
        return value
    kc = key_config(config, principal.name)
    if kc is None:
        return None
    if field in ("requests_per_minute", "tokens_per_minute"):
        return getattr(kc.rate_limit, field) if kc.rate_limit else None
    return getattr(kc, field, None)


def guarded(what: str, fail_open: bool, call: Callable[[], T], fallback: T) -> T:
    """Run a storage call under the outage policy.

    Storage backends raise ServiceUnavailableError after a short timeout.
    fail_open: log and answer `fallback`; otherwise the 503 reaches the client.
    """
    try:
        return call()
    except ServiceUnavailableError as err:
        if not fail_open:
            raise
        log.warning("%s: storage unavailable, failing open: %s", what, err.message)
        return fallback


def quietly(what: str, call: Callable[[], Any]) -> None:
    """A storage call after the answer is decided (settle, release): log failures."""
    try:
        call()
    except ServiceUnavailableError as err:
        log.error("%s: storage unavailable: %s", what, err.message)
