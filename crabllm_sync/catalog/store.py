"""The providers table and its version stamp, in db.Database's SQL database.

Every change bumps `provider_version` in the same transaction, so a worker
learns that something changed by reading one integer, and reads the rows
only then.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import peewee

from crabllm_sync.db import Database, dumps, loads, unavailable_as_503

VERSION_ROW = 1


@dataclass(frozen=True, slots=True)
class ProviderRow:
    name: str
    spec: dict[str, Any]  # as the admin sent it, `${VAR}` unexpanded
    created_at: float
    updated_at: float


def tables(db: peewee.Database) -> tuple[type[peewee.Model], type[peewee.Model]]:
    """The peewee models (providers, provider_version) bound to `db`."""

    class Base(peewee.Model):
        class Meta:
            database = db

    class RuntimeProvider(Base):
        name = peewee.CharField(max_length=64, unique=True)
        spec = peewee.TextField()  # JSON object
        created_at = peewee.FloatField()
        updated_at = peewee.FloatField()

        class Meta:
            table_name = "providers"

    class ProviderVersion(Base):
        id = peewee.IntegerField(primary_key=True)
        version = peewee.BigIntegerField(default=0)

        class Meta:
            table_name = "provider_version"

    return RuntimeProvider, ProviderVersion


def create_tables(db: peewee.Database) -> None:
    """Migration: the two tables and the version row."""
    providers, version = tables(db)
    db.create_tables([providers, version])
    version.insert(id=VERSION_ROW, version=0).on_conflict_ignore().execute()


class ProviderStore:
    """Rows of run-time providers; each call one short connection."""

    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        self.P, self.V = tables(db.db)

    def version(self) -> int:
        """The stamp every change bumps (0 before any change)."""
        with unavailable_as_503(), self.db.db.connection_context():
            row = self.V.select(self.V.version).where(self.V.id == VERSION_ROW).first()
        return int(row.version) if row is not None else 0

    def rows(self) -> tuple[int, list[ProviderRow]]:
        """The version and every row, read together."""
        with unavailable_as_503(), self.db.db.connection_context():
            with self.db.db.atomic():
                version = self.V.select(self.V.version).where(self.V.id == VERSION_ROW)
                stamp = version.scalar() or 0
                rows = [_row(r) for r in self.P.select().order_by(self.P.name).dicts()]
        return int(stamp), rows

    @contextmanager
    def change(self) -> Iterator[Changes]:
        """A write transaction under the providers lock: the block reads the
        current rows, decides, and writes; the version is bumped with it."""
        with unavailable_as_503(), self.db.db.connection_context():
            with self.db.locked("providers"):
                rows = {
                    r["name"]: _row(r) for r in self.P.select().dicts()
                }  # read under the lock: no other writer between read and write
                changes = Changes(rows, self.clock())
                yield changes
                if changes.writes:
                    for op, name, spec in changes.writes:
                        self._write(op, name, spec, changes.now)
                    self.V.update(version=self.V.version + 1).where(
                        self.V.id == VERSION_ROW
                    ).execute()

    def _write(self, op: str, name: str, spec: dict[str, Any], now: float) -> None:
        P = self.P
        if op == "insert":
            P.insert(
                name=name, spec=dumps(spec), created_at=now, updated_at=now
            ).execute()
        elif op == "update":
            P.update(spec=dumps(spec), updated_at=now).where(P.name == name).execute()
        else:
            P.delete().where(P.name == name).execute()


class Changes:
    """What one change() block sees (the rows) and decides (the writes)."""

    def __init__(self, rows: dict[str, ProviderRow], now: float) -> None:
        self.rows = rows
        self.now = now
        self.writes: list[tuple[str, str, dict[str, Any]]] = []

    def put(self, name: str, spec: dict[str, Any]) -> ProviderRow:
        old = self.rows.get(name)
        self.writes.append(("update" if old else "insert", name, spec))
        row = ProviderRow(name, spec, old.created_at if old else self.now, self.now)
        self.rows[name] = row
        return row

    def remove(self, name: str) -> None:
        self.writes.append(("delete", name, {}))
        del self.rows[name]


def _row(r: dict[str, Any]) -> ProviderRow:
    return ProviderRow(
        name=r["name"],
        spec=loads(r["spec"], {}),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
    )
