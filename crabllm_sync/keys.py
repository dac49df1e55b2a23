"""Virtual keys: secrets (generated, hashed, never stored plain) and the key store.

The store keeps key records in the SQL database (db.Database) or, for `memory`
storage, in the process. Only admin actions write; the request path only reads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import peewee
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from crabllm_sync.config import KeyConfig, RateLimitConfig
from crabllm_sync.db import Database, dumps, loads, unavailable_as_503
from crabllm_sync.errors import ConflictError, InvalidRequestError, NotFoundError

KEY_PREFIX = "sk-crabllm-"
DISPLAY_CHARS = 14  # "sk-crabllm-" plus 3 characters of the random part
# Starts with a letter or digit: no ".", "..", "-flag" look-alikes in paths or argv.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@:-]*$"
NAME_MAX = 128
_NAME = re.compile(NAME_PATTERN)

log = logging.getLogger(__name__)


def generate_key() -> str:
    """A fresh secret: `sk-crabllm-` and 32 url-safe random bytes."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """SHA-256 hex of the secret: what is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    """The first characters, enough to tell keys apart; never a third of a secret."""
    return secret[: min(DISPLAY_CHARS, len(secret) // 3)]


def same_secret(a: str, b: str) -> bool:
    """Compare two secrets (or their hashes) in constant time."""
    return hmac.compare_digest(a.encode(), b.encode())


def check_name(name: str) -> str:
    """The name if it is a valid key name, else InvalidRequestError."""
    if not (0 < len(name) <= NAME_MAX) or not _NAME.match(name):
        raise InvalidRequestError(
            f"invalid key name: 1-{NAME_MAX} letters, digits or ._@:-, "
            "starting with a letter or digit",
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


_COLUMNS = (
    "models",
    "requests_per_minute",
    "tokens_per_minute",
    "budget",
    "max_parallel_requests",
    "expires_at",
    "metadata",
)


def _columns(spec: KeyUpdate) -> dict[str, Any]:
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


def _config_columns(k: KeyConfig) -> dict[str, Any]:
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


# -- where records live -------------------------------------------------------------


class _Table(Protocol):
    def start(self) -> None: ...
    def insert(self, row: dict[str, Any]) -> None: ...
    def by_name(self, name: str) -> KeyRecord | None: ...
    def by_hash(self, digest: str) -> KeyRecord | None: ...
    def all(self) -> list[KeyRecord]: ...
    def update(self, name: str, columns: dict[str, Any]) -> bool: ...
    def revoke(self, name: str, now: float) -> bool: ...
    def count(self) -> int: ...
    def load_config(self, rows: list[dict[str, Any]], now: float) -> list[str]: ...


def _record(row: Mapping[str, Any]) -> KeyRecord:
    models = row["models"]
    if isinstance(models, str):
        models = loads(models, ["*"])
    metadata = row["metadata"]
    if isinstance(metadata, str):
        metadata = loads(metadata, {})
    return KeyRecord(
        name=row["name"],
        key_hash=row["key_hash"],
        key_prefix=row["key_prefix"],
        models=tuple(models),
        requests_per_minute=row["requests_per_minute"],
        tokens_per_minute=row["tokens_per_minute"],
        budget=row["budget"],
        max_parallel_requests=row["max_parallel_requests"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        revoked_at=row["revoked_at"],
        metadata=metadata,
        source=row["source"],
    )


class _SqlTable:
    """Key rows in db.Database's ApiKey model; each call one short connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.K = db.m.ApiKey

    def _sql(self, row: dict[str, Any]) -> dict[str, Any]:
        out = dict(row)
        if "models" in out:
            out["models"] = dumps(list(out["models"]))
        if "metadata" in out:
            out["metadata"] = dumps(out["metadata"])
        return out

    def start(self) -> None:
        with unavailable_as_503():
            self.db.migrate()

    def insert(self, row: dict[str, Any]) -> None:
        with unavailable_as_503(), self.db.db.connection_context():
            try:
                with self.db.db.atomic():
                    self.K.insert(**self._sql(row)).execute()
            except peewee.IntegrityError:
                raise ConflictError(
                    f"a key named '{row['name']}' already exists", param="name"
                ) from None

    def _one(self, where: Any) -> KeyRecord | None:
        with unavailable_as_503(), self.db.db.connection_context():
            rows = list(self.K.select().where(where).limit(1).dicts())
        return _record(rows[0]) if rows else None

    def by_name(self, name: str) -> KeyRecord | None:
        return self._one(self.K.name == name)

    def by_hash(self, digest: str) -> KeyRecord | None:
        return self._one(self.K.key_hash == digest)

    def all(self) -> list[KeyRecord]:
        with unavailable_as_503(), self.db.db.connection_context():
            return [_record(r) for r in self.K.select().order_by(self.K.name).dicts()]

    def update(self, name: str, columns: dict[str, Any]) -> bool:
        # Only the named columns: never a whole record written back.
        with unavailable_as_503(), self.db.db.connection_context():
            n = self.K.update(**self._sql(columns)).where(self.K.name == name).execute()
        return n > 0

    def revoke(self, name: str, now: float) -> bool:
        K = self.K
        with unavailable_as_503(), self.db.db.connection_context():
            K.update(revoked_at=now, updated_at=now).where(
                (K.name == name) & K.revoked_at.is_null()
            ).execute()
            return K.select().where(K.name == name).exists()

    def count(self) -> int:
        with unavailable_as_503(), self.db.db.connection_context():
            return self.K.select().count()

    def load_config(self, rows: list[dict[str, Any]], now: float) -> list[str]:
        K = self.K
        problems: list[str] = []
        with unavailable_as_503(), self.db.db.connection_context():
            with self.db.locked("keys"):
                for row in rows:
                    existing = list(
                        K.select(K.source).where(K.name == row["name"]).dicts()
                    )
                    if existing and existing[0]["source"] != "config":
                        problems.append(
                            f"config key '{row['name']}' skipped: a key of that "
                            "name was created through the admin API"
                        )
                        continue
                    other = (
                        K.select()
                        .where(
                            (K.key_hash == row["key_hash"]) & (K.name != row["name"])
                        )
                        .exists()
                    )
                    if other:
                        problems.append(
                            f"config key '{row['name']}' skipped: its secret "
                            "belongs to another key"
                        )
                        continue
                    data = self._sql(row)
                    if existing:
                        data.pop("created_at", None)
                        data.pop("source", None)
                        data.pop("revoked_at", None)  # a revocation sticks
                        K.update(**data).where(K.name == row["name"]).execute()
                    else:
                        K.insert(**data).execute()
        return problems


class _MemoryTable:
    """Key rows in this process only (`memory` storage: trials and tests)."""

    def __init__(self) -> None:
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def insert(self, row: dict[str, Any]) -> None:
        with self._lock:
            if row["name"] in self._rows:
                raise ConflictError(
                    f"a key named '{row['name']}' already exists", param="name"
                )
            if any(r["key_hash"] == row["key_hash"] for r in self._rows.values()):
                raise ConflictError("that secret belongs to another key", param="key")
            self._rows[row["name"]] = dict(row)

    def by_name(self, name: str) -> KeyRecord | None:
        with self._lock:
            row = self._rows.get(name)
            return _record(row) if row else None

    def by_hash(self, digest: str) -> KeyRecord | None:
        with self._lock:
            for row in self._rows.values():
                if row["key_hash"] == digest:
                    return _record(row)
        return None

    def all(self) -> list[KeyRecord]:
        with self._lock:
            return [_record(self._rows[n]) for n in sorted(self._rows)]

    def update(self, name: str, columns: dict[str, Any]) -> bool:
        with self._lock:
            row = self._rows.get(name)
            if row is None:
                return False
            row.update(columns)
            return True

    def revoke(self, name: str, now: float) -> bool:
        with self._lock:
            row = self._rows.get(name)
            if row is None:
                return False
            if row["revoked_at"] is None:
                row.update(revoked_at=now, updated_at=now)
            return True

    def count(self) -> int:
        with self._lock:
            return len(self._rows)

    def load_config(self, rows: list[dict[str, Any]], now: float) -> list[str]:
        for row in rows:
            with self._lock:
                existing = self._rows.get(row["name"])
                if existing is not None:
                    keep = {k: existing[k] for k in ("created_at", "revoked_at")}
                    existing.update(row, **keep)
                    continue
            self.insert(row)
        return []


class KeyStore:
    """Create, list, show, update and revoke virtual keys; look them up by hash."""

    def __init__(
        self, db: Database | None, clock: Callable[[], float] = time.time
    ) -> None:
        self.db = db
        self.clock = clock
        self._table: _Table = _SqlTable(db) if db is not None else _MemoryTable()
        self._pending: list[dict[str, Any]] | None = []  # [[keys]] not yet loaded

    def start(self, config_keys: Iterable[KeyConfig] = ()) -> list[str]:
        """Migrate and load `[[keys]]` (idempotent); returns what was skipped.

        With the database down this raises ServiceUnavailableError, and every
        later call tries again first, so a gateway started during an outage
        heals when the database is back.
        """
        now = self.clock()
        self._pending = [
            {
                "name": k.name,
                **_config_columns(k),
                "created_at": now,
                "updated_at": now,
                "revoked_at": None,
                "source": "config",
            }
            for k in config_keys
        ]
        return self._ready()

    def _ready(self) -> list[str]:
        if self._pending is None:
            return []
        self._table.start()
        problems = self._table.load_config(self._pending, self.clock())
        self._pending = None
        for problem in problems:
            log.warning(problem)
        return problems

    def create(
        self, spec: NewKey, *, secret: str | None = None, source: str = "api"
    ) -> tuple[KeyRecord, str]:
        """A new key and its secret (the only time the secret is seen)."""
        check_name(spec.name)
        self._ready()
        secret = secret or generate_key()
        now = self.clock()
        columns = _columns(spec)
        row = {
            "name": spec.name,
            "key_hash": hash_key(secret),
            "key_prefix": display_prefix(secret),
            "models": ["*"],
            "requests_per_minute": None,
            "tokens_per_minute": None,
            "budget": None,
            "max_parallel_requests": None,
            "expires_at": None,
            "metadata": {},
            **columns,
            "created_at": now,
            "updated_at": now,
            "revoked_at": None,
            "source": source,
        }
        self._table.insert(row)
        return self.get(spec.name), secret

    def list(self) -> list[KeyRecord]:
        self._ready()
        return self._table.all()

    def get(self, name: str) -> KeyRecord:
        self._ready()
        record = self._table.by_name(check_name(name))
        if record is None:
            raise NotFoundError(f"no key named '{name}'", param="name")
        return record

    def update(self, name: str, changes: KeyUpdate) -> KeyRecord:
        check_name(name)
        self._ready()
        columns = _columns(changes)
        columns["updated_at"] = self.clock()
        if not self._table.update(name, columns):
            raise NotFoundError(f"no key named '{name}'", param="name")
        return self.get(name)

    def revoke(self, name: str) -> KeyRecord:
        check_name(name)
        self._ready()
        if not self._table.revoke(name, self.clock()):
            raise NotFoundError(f"no key named '{name}'", param="name")
        return self.get(name)

    def find(self, digest: str) -> KeyRecord | None:
        """The record whose secret hashes to `digest`, whatever its status."""
        self._ready()
        return self._table.by_hash(digest)

    def count(self) -> int:
        """Keys stored, revoked and expired included (any key turns auth on)."""
        self._ready()
        return self._table.count()
