"""Who is calling: headers -> Principal, and which models a principal may use.

Auth is off when no key is configured anywhere.
"""

from __future__ import annotations

import fnmatch
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from crabllm_sync.config import Config
from crabllm_sync.errors import (
    InvalidApiKeyError,
    ModelNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from crabllm_sync.keys.model import ADMIN_NAME, KeyRecord, hash_key, is_reserved
from crabllm_sync.keys.store import KeyStore

log = logging.getLogger(__name__)

# How long a key lookup is trusted in a worker. A revoked key is refused on
# every worker of every host at most this long after the revocation commits
# (the documented bound is 5 s; this leaves room for a slow database).
CACHE_TTL = 2.0
# While the key store is unreachable (a database restarting), a key verified
# less than CACHE_TTL + STALE_IF_ERROR ago is still accepted: a short outage
# costs no request, and a revocation still lands within the 5 s bound.
STALE_IF_ERROR = 3.0
# Unknown secrets are remembered less long, so a key created just after a
# failed try works soon; this still keeps floods of bad keys off the database.
NEGATIVE_TTL = 1.0
# Entries each worker keeps. Known keys and unknown secrets are bounded apart,
# so a flood of bogus tokens evicts only other bogus tokens, never a valid key.
CACHE_MAX = 10_000
NEGATIVE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # None when auth is off
    models: tuple[str, ...] = ("*",)
    is_admin: bool = False
    limits: Mapping[str, object] = field(default_factory=dict)
    # The key's own limits (None: no limit of that kind on this key).
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget: float | None = None  # USD
    max_parallel_requests: int | None = None
    metadata: Mapping[str, object] = field(default_factory=dict)


ANONYMOUS = Principal(name=None)


def bearer(headers: Mapping[str, str], *, allow_x_api_key: bool = False) -> str | None:
    """The secret from `Authorization: Bearer` (or `x-api-key` where allowed)."""
    value = headers.get("Authorization")
    if value:
        scheme, _, token = value.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if allow_x_api_key:
        token = headers.get("x-api-key")
        if token:
            return token.strip()
    return None


def allows(principal: Principal, model: str) -> bool:
    """Whether the principal may use `model` (`*`, exact names, `prefix*` globs)."""
    for pattern in principal.models:
        if pattern == "*" or pattern == model:
            return True
        if "*" in pattern or "?" in pattern:
            if fnmatch.fnmatchcase(model, pattern):
                return True
    return False


def check_model(principal: Principal, *names: str) -> None:
    """ModelNotAllowedError unless the principal may use one of `names`."""
    if any(allows(principal, n) for n in names if n):
        return
    raise ModelNotAllowedError(
        f"this key is not allowed to use the model '{names[0]}'", param="model"
    )


def principal_for(record: KeyRecord) -> Principal:
    """The Principal of a stored key, its limits included."""
    limits = {
        name: getattr(record, name)
        for name in (
            "requests_per_minute",
            "tokens_per_minute",
            "budget",
            "max_parallel_requests",
        )
        if getattr(record, name) is not None
    }
    return Principal(
        name=record.name,
        models=tuple(record.models),
        limits=limits,
        requests_per_minute=record.requests_per_minute,
        tokens_per_minute=record.tokens_per_minute,
        budget=record.budget,
        max_parallel_requests=record.max_parallel_requests,
        metadata=dict(record.metadata),
    )


class Authenticator:
    """Bearer secret -> Principal, through a short per-worker cache of the key store.

    Reads only: nothing here writes a key, so no stale copy can undo a revocation.
    """

    def __init__(
        self,
        config: Config,
        keys: KeyStore | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        ttl: float = CACHE_TTL,
        negative_ttl: float = NEGATIVE_TTL,
    ) -> None:
        if keys is None:
            keys = KeyStore(None, clock=wall)
            keys.start(config.keys)
        self.keys = keys
        self._admin_hash = hash_key(config.admin_token) if config.admin_token else None
        self._metrics_hash = (
            hash_key(config.metrics_token) if config.metrics_token else None
        )
        self._has_config_keys = bool(config.keys)
        self._clock = clock
        self._wall = wall
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        # sha256 -> (trusted until, record, principal): known keys
        self._cache: dict[str, tuple[float, KeyRecord, Principal]] = {}
        # sha256 -> trusted until: secrets no key has (at lookup time)
        self._misses: dict[str, float] = {}
        self._enabled_until = 0.0
        self._enabled = False

    @property
    def has_admin(self) -> bool:
        return self._admin_hash is not None

    @property
    def is_enabled(self) -> bool:
        """Whether any key exists (config or storage); cached like lookups."""
        if self._has_config_keys or self._enabled:
            return True  # keys are revoked, never deleted: once on, auth stays on
        now = self._clock()
        if now < self._enabled_until:
            return False
        self._enabled = self.keys.count() > 0
        self._enabled_until = now + self._negative_ttl
        return self._enabled

    def forget(self) -> None:
        """Drop this worker's cache (after a key change made in this process)."""
        self._cache.clear()
        self._misses.clear()
        self._enabled_until = 0.0

    def log_startup(self) -> None:
        """Say loudly at start when auth is off."""
        try:
            enabled = self.is_enabled
        except ServiceUnavailableError as exc:
            log.error("key storage unavailable at start-up (%s); will retry", exc)
            return
        if not enabled:
            log.warning(
                "AUTH IS OFF: no keys in the config or in storage; anyone can "
                "call this gateway. Create one (`crabllm-sync keys create NAME` or "
                "POST /v1/admin/keys) to turn auth on."
            )

    def is_admin_secret(self, secret: str) -> bool:
        if self._admin_hash is None:
            return False
        return hmac.compare_digest(hash_key(secret), self._admin_hash)

    def authenticate(
        self, headers: Mapping[str, str], *, allow_x_api_key: bool = False
    ) -> Principal:
        secret = bearer(headers, allow_x_api_key=allow_x_api_key)
        if secret and self.is_admin_secret(secret):
            return Principal(name=ADMIN_NAME, is_admin=True)
        if not self.is_enabled:
            return ANONYMOUS
        if not secret:
            raise InvalidApiKeyError(
                "Missing API key: send 'Authorization: Bearer <key>'"
            )
        return self.principal(secret)

    def principal(self, secret: str) -> Principal:
        """The Principal of a key secret; InvalidApiKeyError if it may not call."""
        # Lookup is by SHA-256 of the secret: its timing says nothing of the secret.
        record, principal = self._lookup(hash_key(secret))
        if record is None or principal is None:
            raise InvalidApiKeyError("Incorrect API key provided")
        if is_reserved(record.name):
            # Stored before the name was reserved: it would act as the admin
            # token's identity (usage, budget, rate counters, cache scope).
            raise InvalidApiKeyError(
                f"the key name '{record.name}' is reserved for the admin token; "
                "revoke this key and create one with another name"
            )
        status = record.status(self._wall())
        if status == "revoked":
            raise InvalidApiKeyError("This API key has been revoked")
        if status == "expired":
            raise InvalidApiKeyError("This API key has expired")
        return principal

    def require_admin_route(self, headers: Mapping[str, str]) -> Principal:
        """An admin route: 404 while no admin_token is set (the routes are
        off), else require_admin."""
        if not self.has_admin:
            raise NotFoundError(
                "admin routes are off: set admin_token in the config to enable them"
            )
        return self.require_admin(headers)

    def require_admin(self, headers: Mapping[str, str]) -> Principal:
        """The admin principal; 401 without a valid token, 403 for a plain key."""
        secret = bearer(headers)
        if not secret:
            raise InvalidApiKeyError(
                "Missing admin token: send 'Authorization: Bearer <admin_token>'"
            )
        if self.is_admin_secret(secret):
            return Principal(name=ADMIN_NAME, is_admin=True)
        record, _ = self._lookup(hash_key(secret))
        if record is not None and record.status(self._wall()) == "active":
            raise PermissionDeniedError("this key is not an admin token")
        raise InvalidApiKeyError("Incorrect admin token provided")

    def require_metrics(self, headers: Mapping[str, str]) -> None:
        """/metrics names every key and its spend: the metrics or admin token only.

        With neither configured it is refused (403 naming the fix), never open.
        """
        if self._metrics_hash is None and self._admin_hash is None:
            raise PermissionDeniedError(
                "/metrics needs metrics_token (or admin_token) in the config"
            )
        secret = bearer(headers)
        if not secret:
            raise InvalidApiKeyError(
                "Missing token: /metrics needs "
                "'Authorization: Bearer <metrics_token or admin_token>'"
            )
        digest = hash_key(secret)
        for wanted in (self._metrics_hash, self._admin_hash):
            if wanted is not None and hmac.compare_digest(digest, wanted):
                return
        raise InvalidApiKeyError("/metrics needs the metrics token or the admin token")

    def _lookup(self, digest: str) -> tuple[KeyRecord | None, Principal | None]:
        now = self._clock()
        hit = self._cache.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1], hit[2]
        missed_until = self._misses.get(digest)
        if missed_until is not None and now < missed_until:
            return None, None
        try:
            record = self.keys.find(digest)
        except ServiceUnavailableError:
            if hit is not None and now < hit[0] + STALE_IF_ERROR:
                log.warning("key store unavailable: using this worker's last lookup")
                return hit[1], hit[2]
            raise
        if record is None:
            _remember(self._misses, digest, now + self._negative_ttl, NEGATIVE_MAX)
            return None, None
        principal = principal_for(record)
        self._misses.pop(digest, None)
        _remember(self._cache, digest, (now + self._ttl, record, principal), CACHE_MAX)
        return record, principal


def _remember(cache: dict[str, Any], digest: str, entry: Any, limit: int) -> None:
    """Store `entry` as the newest; evict the oldest beyond `limit`.

    Every entry of one cache has the same TTL, so the oldest is also the one
    that expires first.
    """
    cache.pop(digest, None)
    while len(cache) >= limit:
        del cache[next(iter(cache))]
    cache[digest] = entry
