"""Who is calling: headers -> Principal, and which models a principal may use.

Auth is off when no key is configured anywhere.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field

from crabllm_sync.config import Config
from crabllm_sync.errors import InvalidApiKeyError, ModelNotAllowedError


@dataclass(frozen=True, slots=True)
class Principal:
    name: str | None  # None when auth is off
    models: tuple[str, ...] = ("*",)
    is_admin: bool = False
    limits: Mapping[str, object] = field(default_factory=dict)


ANONYMOUS = Principal(name=None)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


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


class Authenticator:
    """Keys from the config, looked up by hash."""

    def __init__(self, config: Config) -> None:
        self._by_hash = {
            hash_key(k.key): Principal(name=k.name, models=tuple(k.models))
            for k in config.keys
        }
        self._admin_hash = hash_key(config.admin_token) if config.admin_token else None

    @property
    def is_enabled(self) -> bool:
        return bool(self._by_hash)

    def authenticate(
        self, headers: Mapping[str, str], *, allow_x_api_key: bool = False
    ) -> Principal:
        if not self.is_enabled:
            return ANONYMOUS
        secret = bearer(headers, allow_x_api_key=allow_x_api_key)
        if not secret:
            raise InvalidApiKeyError(
                "Missing API key: send 'Authorization: Bearer <key>'"
            )
        digest = hash_key(secret)
        if self._admin_hash and hmac.compare_digest(digest, self._admin_hash):
            return Principal(name="admin", is_admin=True)
        principal = self._by_hash.get(digest)
        if principal is None:
            raise InvalidApiKeyError("Incorrect API key provided")
        return principal
