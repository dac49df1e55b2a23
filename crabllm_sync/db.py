"""Durable records in SQL through peewee: virtual keys, usage records and
(catalog/store.py) providers added at run time.

One `Database` per gateway, with its own model classes bound to its own
connection (no module-level binding). Schema versions live in `schema_version`;
`migrate()` applies what is missing and never drops data.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson
import peewee
from playhouse.db_url import connect

from crabllm_sync.config import Config
from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.ledger import store as ledger
from crabllm_sync.storage.postgres import (
    PostgresLimits,
    driver_errors,
    postgresql_database,
)
from crabllm_sync.storage.sqlite import enable_wal

SCHEMA_VERSION = 1
SQLITE_BUSY_MS = 5000


def database_url(config: Config) -> str:
    """`[storage] database`, else the sqlite file, else ./crabllm.db beside redis."""
    s = config.storage
    if s.database:
        return s.database
    if s.kind == "sqlite":
        return f"sqlite:///{s.path or 'crabllm.db'}"
    return "sqlite:///crabllm.db"


def open_database(config: Config) -> Database | None:
    """The SQL database of keys and usage; None for `memory` (all in process)."""
    if config.storage.kind == "memory" and not config.storage.database:
        return None
    return Database.for_config(config)


@contextmanager
def unavailable_as_503(what: str = "database") -> Iterator[None]:
    """Turn a database that is locked, gone or unreachable into a 503."""
    try:
        yield
    except (
        peewee.OperationalError,
        peewee.InterfaceError,
        peewee.InternalError,
    ) as exc:
        raise ServiceUnavailableError(f"{what} unavailable: {exc}") from exc


@dataclass
class Models:
    ApiKey: type[peewee.Model]
    UsageRecord: type[peewee.Model]
    SchemaVersion: type[peewee.Model]
    StoredResponse: type[peewee.Model]


def _models(db: peewee.Database) -> Models:
    class Base(peewee.Model):
        class Meta:
            database = db

    class SchemaVersion(Base):
        version = peewee.IntegerField(primary_key=True)
        applied_at = peewee.FloatField()

        class Meta:
            table_name = "schema_version"

    class ApiKey(Base):
        name = peewee.CharField(max_length=128, unique=True)
        key_hash = peewee.CharField(max_length=64, unique=True)
        key_prefix = peewee.CharField(max_length=16)
        models = peewee.TextField(default='["*"]')  # JSON list of patterns
        requests_per_minute = peewee.IntegerField(null=True)
        tokens_per_minute = peewee.IntegerField(null=True)
        budget = peewee.FloatField(null=True)  # USD
        max_parallel_requests = peewee.IntegerField(null=True)
        expires_at = peewee.FloatField(null=True)  # epoch seconds
        created_at = peewee.FloatField()
        updated_at = peewee.FloatField()
        revoked_at = peewee.FloatField(null=True)
        metadata = peewee.TextField(default="{}")  # JSON object
        source = peewee.CharField(max_length=16, default="api")  # api | config

        class Meta:
            table_name = "api_keys"

    class UsageRecord(Base):
        request_id = peewee.CharField(max_length=64, unique=True)
        ts = peewee.FloatField(index=True)  # epoch seconds
        key_name = peewee.CharField(max_length=128, null=True, index=True)
        model = peewee.CharField(max_length=256, index=True)
        provider = peewee.CharField(max_length=128, null=True)
        endpoint = peewee.CharField(max_length=32)
        input_tokens = peewee.IntegerField(default=0)  # uncached input
        cache_read_tokens = peewee.IntegerField(default=0)
        cache_write_tokens = peewee.IntegerField(default=0)
        output_tokens = peewee.IntegerField(default=0)
        reasoning_tokens = peewee.IntegerField(default=0)
        estimated = peewee.BooleanField(default=False)
        cost_nanos = peewee.BigIntegerField(default=0)  # USD x 1e9, exact sums
        images = peewee.IntegerField(default=0)  # images generated
        characters = peewee.IntegerField(default=0)  # speech input characters
        audio_ms = peewee.BigIntegerField(default=0)  # transcribed audio, ms
        latency_ms = peewee.FloatField(default=0)
        status = peewee.IntegerField(default=200)
        stream = peewee.BooleanField(default=False)
        cache_hit = peewee.BooleanField(default=False)

        class Meta:
            table_name = "usage"

    class StoredResponse(Base):
        # Responses API state (response_store.py): one JSON record per response.
        id = peewee.CharField(max_length=64, primary_key=True)
        key_name = peewee.CharField(max_length=128)
        created_at = peewee.FloatField()
        expires_at = peewee.FloatField(index=True)
        provider = peewee.CharField(max_length=128, null=True)
        record = peewee.TextField()

        class Meta:
            table_name = "responses"

    return Models(
        ApiKey=ApiKey,
        UsageRecord=UsageRecord,
        SchemaVersion=SchemaVersion,
        StoredResponse=StoredResponse,
    )


# Each entry migrates from version N-1 to N; append, never edit.
def _v1(m: Models, db: peewee.Database) -> None:
    db.create_tables([m.ApiKey, m.UsageRecord])


def _v2(m: Models, db: peewee.Database) -> None:
    """Media units (images, speech characters, audio ms) on usage rows."""
    from playhouse.migrate import SchemaMigrator, migrate

    have = {c.name for c in db.get_columns(m.UsageRecord._meta.table_name)}
    migrator = SchemaMigrator.from_database(db)
    migrate(
        *(
            migrator.add_column(m.UsageRecord._meta.table_name, name, field)
            for name, field in (
                ("images", peewee.IntegerField(default=0)),
                ("characters", peewee.IntegerField(default=0)),
                ("audio_ms", peewee.BigIntegerField(default=0)),
            )
            if name not in have  # a database made at v2 has them from _v1
        )
    )


def _v3(m: Models, db: peewee.Database) -> None:
    """Stored Responses API state (response_store.py)."""
    db.create_tables([m.StoredResponse])


def _v4(m: Models, db: peewee.Database) -> None:
    """The request log and its usage rollups (audit/schema.py)."""
    from crabllm_sync.audit import schema

    schema.create(db)


def _v5(m: Models, db: peewee.Database) -> None:
    """Providers managed at run time and their version stamp (catalog/)."""
    from crabllm_sync.catalog.store import create_tables

    create_tables(db)


def _v6(m: Models, db: peewee.Database) -> None:
    """Hourly and daily usage rollups (ledger/schema.py), filled from the
    rows already stored. PostgreSQL's usage.ts becomes DOUBLE PRECISION: it
    was REAL (4 bytes: epoch seconds rounded to about two minutes), which
    would put rows near an hour's end in another bucket than their ts."""
    from crabllm_sync.ledger import schema

    if isinstance(db, peewee.PostgresqlDatabase):
        # A one-time rewrite of every row: not bound by statement_timeout.
        db.execute_sql("SET LOCAL statement_timeout = 0")
        db.execute_sql('ALTER TABLE "usage" ALTER COLUMN ts TYPE DOUBLE PRECISION')
    schema.create(db)
    schema.backfill(db)


MIGRATIONS = {1: _v1, 2: _v2, 3: _v3, 4: _v4, 5: _v5, 6: _v6}


class _SqliteDatabase(peewee.SqliteDatabase):
    """peewee's SqliteDatabase, switching each new connection to WAL with
    storage.sqlite.enable_wal (tried again while another worker is switching
    the same new file) before its other pragmas."""

    def _set_pragmas(self, conn: Any) -> None:
        enable_wal(conn)
        super()._set_pragmas(conn)


class Database:
    """Keys and usage records in one SQL database (sqlite file or a peewee URL)."""

    def __init__(self, url: str, limits: PostgresLimits | None = None) -> None:
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
            self.db: peewee.Database = _SqliteDatabase(
                path,
                pragmas={
                    "busy_timeout": SQLITE_BUSY_MS,
                    "synchronous": "normal",
                    "foreign_keys": 1,
                },
                timeout=5,
            )
        elif url.startswith(("postgres://", "postgresql://")):
            self.db = postgresql_database(url, limits or PostgresLimits())
        else:
            self.db = connect(url)
        self.m = _models(self.db)

    @classmethod
    def for_config(cls, config: Config) -> Database:
        """The database of `[storage]`, with its PostgreSQL limits."""
        s = config.storage
        return cls(
            database_url(config),
            PostgresLimits(
                connect_timeout=s.connect_timeout,
                statement_timeout=s.statement_timeout,
            ),
        )

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self.db, peewee.SqliteDatabase)

    @contextmanager
    def locked(self, name: str = "crabllm") -> Iterator[None]:
        """A write transaction that excludes other writers taking the same lock.

        sqlite: BEGIN IMMEDIATE (a deferred transaction that read first could
        fail with SQLITE_BUSY on upgrade). PostgreSQL: a transaction-scoped
        advisory lock. Several workers starting at once queue here.
        """
        if self.is_sqlite:
            with self.db.atomic(lock_type="IMMEDIATE"):
                yield
            return
        with self.db.atomic():
            if isinstance(self.db, peewee.PostgresqlDatabase):
                lock_id = zlib.crc32(name.encode())
                self.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock_id,))
            yield

    def migrate(self) -> None:
        """Create tables and apply pending migrations (idempotent, concurrent-safe)."""
        with self.db.connection_context():
            with self.locked("migrate"):
                self.db.create_tables([self.m.SchemaVersion], safe=True)
                done = {r.version for r in self.m.SchemaVersion.select()}
                for version in sorted(MIGRATIONS):
                    if version in done:
                        continue
                    MIGRATIONS[version](self.m, self.db)
                    self.m.SchemaVersion.create(version=version, applied_at=time.time())

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    # -- usage -----------------------------------------------------------------

    def insert_usage(
        self, rows: Sequence[dict[str, Any]], *, busy_timeout_ms: int | None = None
    ) -> None:
        """Insert usage rows; a request_id already stored is skipped (idempotent).

        `busy_timeout_ms` (sqlite): how long to wait for a lock held by another
        writer before giving up, in place of the usual 5 s.
        """
        if not rows:
            return
        with self.batch(busy_timeout_ms):
            ledger.insert(self.db, "usage", self._usage_fields, rows)

    @contextmanager
    def batch(self, busy_timeout_ms: int | None = None) -> Iterator[None]:
        """A connection and a transaction for a background batch write.

        `busy_timeout_ms` (sqlite): how long to wait for a lock held by another
        writer before giving up, in place of the usual SQLITE_BUSY_MS. Driver
        errors become peewee's, as from its own queries (a locked, slow or
        lost database is retried).
        """
        with self.db.connection_context():
            short = busy_timeout_ms is not None and self.is_sqlite
            if short:
                self.db.execute_sql(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            try:
                with self.db.atomic(), driver_errors():
                    yield
            finally:
                if short:
                    self.db.execute_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    @cached_property
    def _usage_fields(self) -> list[tuple[str, Any]]:
        """The (column, default) of a usage row's INSERT, in column order.

        The INSERT is written by hand (ledger/store.py), not through peewee's
        query builder, which spent more CPU generating SQL for each row than
        sqlite spent storing it."""
        meta = self.m.UsageRecord._meta
        return [
            (f.column_name, f.default) for f in meta.sorted_fields if f.name != "id"
        ]

    def usage_totals(
        self,
        *,
        key_name: str | None = None,
        model: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Per key and model: requests, tokens and cost (nanos), filtered;
        at most `limit` rows, ordered by key and model. Read from the hourly
        and daily rollups, with raw rows only for the minutes of [since,
        until) outside whole hours (ledger/plan.py)."""
        with self.db.connection_context():
            rows = ledger.totals(
                self.db,
                key_name=key_name,
                model=model,
                since=since,
                until=until,
                limit=limit,
            )
        return [_ints(row) for row in rows]

    def prune_usage(self, before: float) -> int:
        """Delete at most ledger.PRUNE_CHUNK raw usage rows older than
        `before`, in a transaction of its own; the rollups keep their sums."""
        with self.db.connection_context():
            with self.db.atomic():
                return ledger.prune(self.db, before)

    def claim_job(self, job: str, now: float, every: float) -> bool:
        """True for the one worker (of every instance) that runs `job` now:
        its last run was `every` seconds ago or more."""
        with self.db.connection_context():
            with self.db.atomic():
                return ledger.claim(self.db, job, now, every)


def _ints(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (int(v or 0) if k not in ("key_name", "model") else v)
        for k, v in row.items()
    }


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | None, default: Any) -> Any:
    return orjson.loads(text) if text else default
