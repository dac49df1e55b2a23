"""Virtual keys, pure parts: secrets (generated, hashed), request bodies, records.

No I/O here; store.py keeps the records.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from crabllm_sync.config import KeyConfig, RateLimitConfig
from crabllm_sync.db import dumps
from crabllm_sync.errors import InvalidRequestError

KEY_PREFIX = "sk-crabllm-"
DISPLAY_CHARS = 14  # "sk-crabllm-" plus 3 characters of the random part
# Starts with a letter or digit: no ".", "..", "-flag" look-alikes in paths or argv.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$"
NAME_MAX = 128
_NAME = re.compile(NAME_PATTERN)
# The admin token's own name in usage rows, cache scopes, budgets and rate
# counters; no key may take it (in any case), or it would share them.
ADMIN_NAME = "admin"


def generate_key() -> str:
    """A fresh secret: `sk-crabllm-` and 32 url-safe random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """SHA-256 hex of the secret: what is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The first characters, enough to tell keys apart; never a third of a secret."""
    return secret[: min(DISPLAY_CHARS, len(secret) // 3)]


def check_name(name: str) -> str:
    """The name if it is a valid key name, else InvalidRequestError."""
    if not (0 < len(name) <= NAME_MAX) or not _NAME.match(name):
        raise InvalidRequestError(
            f"invalid key name: 1-{NAME_MAX} letters, digits or ._@:-, "
            "starting with a letter or digit",
            param="name",
        )
    return name


def is_reserved(name: str) -> bool:
    return name.lower() == ADMIN_NAME


def check_new_name(name: str) -> str:
    """The name if a new key may take it, else InvalidRequestError."""
    check_name(name)
    if is_reserved(name):
        raise InvalidRequestError(
            f"the key name '{name}' is reserved for the admin token; "
            "choose another name",
            param="name",
        )
    return name


# -- what callers send (admin API body, CLI options) ----------------------------


MAX_INT = 2**31 - 1  # fits every SQL integer column
MAX_MODELS = 1000
MAX_PATTERN = 256
MAX_METADATA = 16 * 1024  # bytes of JSON


class KeyRateLimit(RateLimitConfig):
    """`rate_limit` of a key created or changed at run time (bounded integers)."""

    requests_per_minute: int | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        validation_alias=AliasChoices("requests_per_minute", "rpm"),
    )
    tokens_per_minute: int | None = Field(
        None,
        ge=1,
        le=MAX_INT,
        validation_alias=AliasChoices("tokens_per_minute", "tpm"),
    )


class KeyUpdate(BaseModel):
    """Changes to a key; a field left out is unchanged, null clears it."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] | None = Field(None, min_length=1, max_length=MAX_MODELS)
    rate_limit: KeyRateLimit | None = None
    budget: float | None = Field(None, ge=0, allow_inf_nan=False)
    max_parallel_requests: int | None = Field(None, ge=1, le=MAX_INT)
    expires_at: datetime | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("models")
    @classmethod
    def _models(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if any(not m.strip() for m in v):
                raise ValueError("model names must be non-empty strings")
            if any(len(m) > MAX_PATTERN for m in v):
                raise ValueError(f"model patterns are at most {MAX_PATTERN} characters")
        return v

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        try:
            size = len(dumps(v))
        except TypeError as exc:  # orjson: integers beyond 64 bits and the like
            raise ValueError(f"metadata cannot be stored as JSON: {exc}") from None
        if size > MAX_METADATA:
            raise ValueError(f"metadata is at most {MAX_METADATA} bytes of JSON")
        return v


class NewKey(KeyUpdate):
    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if is_reserved(v):
            raise ValueError(f"'{v}' is reserved for the admin token")
        return v


M = TypeVar("M", bound=BaseModel)


def parse_body(model: type[M], body: Any) -> M:
    """Validate a JSON body; InvalidRequestError names the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequestError("request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "body"
        msg = {"missing": "is required", "extra_forbidden": "unknown field"}.get(
            err["type"], err["msg"]
        )
        raise InvalidRequestError(f"'{loc}': {msg}", param=loc) from None


# -- what is stored ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRecord:
    name: str
    key_hash: str
    key_prefix: str
    models: tuple[str, ...] = ("*",)
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    budget: float | None = None
    max_parallel_requests: int | None = None
    expires_at: float | None = None  # epoch seconds
    created_at: float = 0.0
    updated_at: float = 0.0
    revoked_at: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = "api"  # api | config

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: float) -> dict[str, Any]:
        """The public view of the record (never the hash)."""
        return {
            "object": "api_key",
            "name": self.name,
            "key_prefix": self.key_prefix,
            "models": list(self.models),
            "rate_limit": {
                "requests_per_minute": self.requests_per_minute,
                "tokens_per_minute": self.tokens_per_minute,
            },
            "budget": self.budget,
            "max_parallel_requests": self.max_parallel_requests,
            "expires_at": iso(self.expires_at),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "revoked_at": iso(self.revoked_at),
            "metadata": dict(self.metadata),
            "source": self.source,
            "status": self.status(now),
        }


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def epoch(value: datetime | None) -> float | None:
    """Epoch seconds; a datetime without a zone is taken as UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def columns_of(spec: KeyUpdate) -> dict[str, Any]:
    """Stored columns for the fields set in `spec` (unset ones are left out)."""
    given = spec.model_fields_set
    out: dict[str, Any] = {}
    if "models" in given:
        out["models"] = list(spec.models) if spec.models is not None else ["*"]
    if "rate_limit" in given:
        rl = spec.rate_limit
        out["requests_per_minute"] = rl.requests_per_minute if rl else None
        out["tokens_per_minute"] = rl.tokens_per_minute if rl else None
    for name in ("budget", "max_parallel_requests", "metadata"):
        if name in given:
            out[name] = getattr(spec, name)
    if "metadata" in out and out["metadata"] is None:
        out["metadata"] = {}
    if "expires_at" in given:
        out["expires_at"] = epoch(spec.expires_at)
    return out


def config_columns(k: KeyConfig) -> dict[str, Any]:
    rl = k.rate_limit
    return {
        "key_hash": hash_key(k.key),
        "key_prefix": display_prefix(k.key),
        "models": list(k.models),
        "requests_per_minute": rl.requests_per_minute if rl else None,
        "tokens_per_minute": rl.tokens_per_minute if rl else None,
        "budget": k.budget,
        "max_parallel_requests": k.max_parallel_requests,
        "expires_at": epoch(k.expires_at),
        "metadata": dict(k.metadata),
    }
