"""The key store: create, list, show, update, revoke and look up virtual keys.

Records live in the SQL database (db.Database) or, for `memory` storage, in
the process. Only admin actions write; the request path only reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import peewee

from crabllm_sync.config import KeyConfig
from crabllm_sync.db import Database, dumps, loads, unavailable_as_503
from crabllm_sync.errors import ConflictError, NotFoundError
from crabllm_sync.keys.model import (
    KeyRecord,
    KeyUpdate,
    NewKey,
    check_name,
    check_new_name,
    columns_of,
    config_columns,
    display_prefix,
    generate_key,
    hash_key,
)

log = logging.getLogger(__name__)


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
                **config_columns(k),
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
        check_new_name(spec.name)
        self._ready()
        secret = secret or generate_key()
        now = self.clock()
        columns = columns_of(spec)
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
        if self.get(name).source == "config":
            # Every start loads [[keys]] over the stored row again.
            raise ConflictError(
                f"key '{name}' is defined in the config file ([[keys]]); "
                "change it there and restart (a change made here would be "
                "undone at the next start). Revoking it works and sticks.",
                param="name",
            )
        columns = columns_of(changes)
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
