"""Stored Responses (`store: true`): the Response, its input items and the
conversation so far, scoped to the virtual key that made it, kept `ttl`
seconds ([responses] ttl).

Two backends, one record shape: redis when `[storage] kind = "redis"` (its
own TTL, shared by every host), else the SQL database of keys and usage
(sqlite, PostgreSQL; table `responses`, db.py migration 3) when there is
one, written in batches off the request path (response_writer.py), else the
memory Storage of the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
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

    def close(self) -> None:
        """Write what is still buffered (worker exit)."""

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

    def close(self) -> None:
        pass  # every write is made when asked (the Storage is closed apart)


class SqlStore:
    """In the SQL database (table `responses`); expired rows are deleted as
    new ones are written."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time):
        self.db = db
        self.clock = clock

    def put(self, record: Stored) -> None:
        with unavailable_as_503("response store"):
            self.put_many([record])

    def put_many(
        self, records: Sequence[Stored], *, busy_timeout_ms: int | None = None
    ) -> None:
        """Write records (a record already there is replaced) in one
        transaction that also deletes the expired ones; peewee's errors are
        raised (the BatchWriter keeps the records and retries)."""
        if not records:
            return
        R = self.db.m.StoredResponse
        values = [
            (
                r.id,
                r.key,
                r.created_at,
                r.expires_at,
                r.provider,
                r.to_json().decode(),
            )
            for r in records
        ]
        with self.db.batch(busy_timeout_ms):
            R.delete().where(R.expires_at <= self.clock()).execute()
            self.db.db.cursor().executemany(self._upsert, values)

    @cached_property
    def _upsert(self) -> str:
        """One prepared upsert (ON CONFLICT ... DO UPDATE is the same in
        sqlite and PostgreSQL), written once rather than built per row."""
        table = self.db.m.StoredResponse._meta.table_name
        columns = ["id", "key_name", "created_at", "expires_at", "provider", "record"]
        names = ", ".join(f'"{c}"' for c in columns)
        params = ", ".join([self.db.db.param] * len(columns))
        update = ", ".join(f'"{c}" = excluded."{c}"' for c in columns[1:])
        return (
            f'INSERT INTO "{table}" ({names}) VALUES ({params}) '
            f'ON CONFLICT ("id") DO UPDATE SET {update}'
        )

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

    def close(self) -> None:
        pass  # every write is made when asked (the Database is closed apart)


def open_store(
    kind: str,
    db: Database | None,
    storage: Storage,
    clock: Callable[[], float] = time.time,
    *,
    flush_interval: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
) -> ResponseStore:
    """The store for `[storage] kind` (see the module's docstring). SQL writes
    are batched off the request path (response_writer.py); a redis SET is one
    round trip, as cheap as adding to a buffer, so it stays synchronous."""
    if kind == "redis" or db is None:
        return KvStore(storage, clock)
    from crabllm_sync.response_writer import BufferedStore

    return BufferedStore(SqlStore(db, clock), flush_interval, sleep=sleep)
