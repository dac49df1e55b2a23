"""Stored Responses (`store: true`): the Response, its input items and the
conversation so far, scoped to the virtual key that made it, kept `ttl`
seconds ([responses] ttl).

Two backends, one record shape: redis when `[storage] kind = "redis"` (its
own TTL, shared by every host), else the SQL database of keys and usage
(sqlite, PostgreSQL; table `responses`, db.py migration 3) when there is
one, else the memory Storage of the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from crabllm_sync.db import unavailable_as_503

if TYPE_CHECKING:
    from crabllm_sync.db import Database
    from crabllm_sync.storage import Storage

PREFIX = "responses:"


@dataclass
class Stored:
    id: str
    key: str  # the virtual key's name that made it
    created_at: float
    expires_at: float
    response: dict[str, Any]
    input_items: list[dict[str, Any]] = field(default_factory=list)
    # Every item of the conversation up to and including this response's
    # output: what a follow-up's previous_response_id continues.
    conversation: list[dict[str, Any]] = field(default_factory=list)
    provider: str | None = None  # stored upstream by this provider (native)

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, data: bytes | str) -> Stored:
        return cls(**orjson.loads(data))


class ResponseStore(Protocol):
    def put(self, record: Stored) -> None: ...

    def get(self, response_id: str, key: str) -> Stored | None:
        """The record, if `key` made it and it has not expired."""

    def delete(self, response_id: str, key: str) -> bool: ...


class KvStore:
    """On the extensions' Storage (memory, redis): one value per response."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time):
        self.storage = storage
        self.clock = clock

    def _key(self, response_id: str, key: str) -> str:
        return f"{PREFIX}{key}:{response_id}"

    def put(self, record: Stored) -> None:
        ttl = max(1.0, record.expires_at - self.clock())
        self.storage.set(self._key(record.id, record.key), record.to_json(), ttl)

    def get(self, response_id: str, key: str) -> Stored | None:
        data = self.storage.get(self._key(response_id, key))
        if data is None:
            return None
        record = Stored.from_json(data)
        return record if record.expires_at > self.clock() else None

    def delete(self, response_id: str, key: str) -> bool:
        if self.get(response_id, key) is None:
            return False
        self.storage.delete(self._key(response_id, key))
        return True


class SqlStore:
    """In the SQL database (table `responses`); expired rows are deleted as
    new ones are written."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    def put(self, record: Stored) -> None:
        R = self.db.m.StoredResponse
        values = {
            R.key_name: record.key,
            R.created_at: record.created_at,
            R.expires_at: record.expires_at,
            R.provider: record.provider,
            R.record: record.to_json().decode(),
        }
        with unavailable_as_503("response store"), self.db.db.connection_context():
            with self.db.db.atomic():
                R.delete().where(R.expires_at <= self.clock()).execute()
                R.insert({R.id: record.id, **values}).on_conflict(
                    conflict_target=[R.id], update=values
                ).execute()

    def get(self, response_id: str, key: str) -> Stored | None:
        R = self.db.m.StoredResponse
        with unavailable_as_503("response store"), self.db.db.connection_context():
            row = (
                R.select(R.record)
                .where(
                    (R.id == response_id)
                    & (R.key_name == key)
                    & (R.expires_at > self.clock())
                )
                .first()
            )
        return None if row is None else Stored.from_json(row.record)

    def delete(self, response_id: str, key: str) -> bool:
        R = self.db.m.StoredResponse
        with unavailable_as_503("response store"), self.db.db.connection_context():
            n = (
                R.delete()
                .where(
                    (R.id == response_id)
                    & (R.key_name == key)
                    & (R.expires_at > self.clock())
                )
                .execute()
            )
        return bool(n)


def open_store(
    kind: str,
    db: Database | None,
    storage: Storage,
    clock: Callable[[], float] = time.time,
) -> ResponseStore:
    """The store for `[storage] kind` (see the module's docstring)."""
    if kind == "redis" or db is None:
        return KvStore(storage, clock)
    return SqlStore(db, clock)
