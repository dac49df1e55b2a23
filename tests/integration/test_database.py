"""db.Database and the key store against a sqlite file and a real PostgreSQL."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections.abc import Callable, Iterator

import pytest

from crabllm_sync.config import KeyConfig
from crabllm_sync.db import MIGRATIONS, Database
from crabllm_sync.errors import ConflictError, NotFoundError, ServiceUnavailableError
from crabllm_sync.keys.model import KeyUpdate, NewKey, hash_key
from crabllm_sync.keys.store import KeyStore
from tests.servers import wait_for

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.db'}"
    pg = request.getfixturevalue("postgres")
    return pg.create_database(f"t{next(_names)}")


@pytest.fixture
def open_db(db_url: str) -> Iterator[Callable[[], Database]]:
    opened: list[Database] = []

    def make() -> Database:
        d = Database(db_url)
        opened.append(d)
        return d

    yield make
    for d in opened:
        d.close()


def _cfg(name: str, key: str, **over) -> KeyConfig:
    return KeyConfig(name=name, key=key, **over)


def test_migrate_is_idempotent_and_versioned(open_db):
    db = open_db()
    db.migrate()
    db.migrate()
    with db.db.connection_context():
        versions = [r.version for r in db.m.SchemaVersion.select()]
    assert versions == sorted(MIGRATIONS) == [1, 2, 3, 4, 5, 6]


def test_a_version_1_usage_table_gains_the_media_columns(open_db):
    db = open_db()
    U = db.m.UsageRecord
    media = {"images", "characters", "audio_ms"}
    with db.db.connection_context():
        # The v1 schema as it was released: the usage table without media units.
        db.db.create_tables([db.m.SchemaVersion, db.m.ApiKey, U])
        for name in sorted(media):
            db.db.execute_sql(f'ALTER TABLE "usage" DROP COLUMN "{name}"')
        db.m.SchemaVersion.create(version=1, applied_at=0)
        assert not media & {c.name for c in db.db.get_columns("usage")}
    db.migrate()
    db.insert_usage(
        [
            {
                "request_id": "r1",
                "ts": 1.0,
                "model": "tts-1",
                "endpoint": "speech",
                "characters": 42,
                "audio_ms": 1500,
                "images": 2,
            }
        ]
    )
    totals = db.usage_totals()
    assert (totals[0]["characters"], totals[0]["audio_ms"], totals[0]["images"]) == (
        42,
        1500,
        2,
    )


def test_workers_starting_at_once_load_config_keys_once(open_db):
    keys = [_cfg("a", "sk-config-aaaa"), _cfg("b", "sk-config-bbbb", models=["x*"])]
    stores = [KeyStore(open_db()) for _ in range(6)]
    errors: list[BaseException] = []
    go = threading.Barrier(len(stores))

    def boot(store: KeyStore) -> None:
        try:
            go.wait()
            store.start(keys)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    records = stores[0].list()
    assert [(r.name, r.source, r.models) for r in records] == [
        ("a", "config", ("*",)),
        ("b", "config", ("x*",)),
    ]
    assert records[0].key_hash == hash_key("sk-config-aaaa")


def test_many_workers_opening_a_new_sqlite_file_together_never_see_it_locked(
    tmp_path,
):
    """Switching a new file to WAL: sqlite answered "database is locked" at
    once (no busy wait) to a connection that lost the race, about one boot in
    fifteen of 8 workers (CI saw it). 40 rounds of 8 workers on a fresh file."""
    failures: list[str] = []
    for round_ in range(40):
        url = f"sqlite:///{tmp_path / f'boot{round_}.db'}"
        stores = [KeyStore(Database(url)) for _ in range(8)]
        go = threading.Barrier(len(stores))

        def boot(store: KeyStore, go: threading.Barrier, n: int) -> None:
            try:
                go.wait()
                store.start([_cfg("a", "sk-config-aaaa")])
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(f"round {n}: {exc!r}")

        threads = [threading.Thread(target=boot, args=(s, go, round_)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for store in stores:
            store.db.close()
    assert failures == []


def test_key_lifecycle(open_db):
    store = KeyStore(open_db())
    store.start()
    spec = NewKey.model_validate(
        {
            "name": "team-a",
            "models": ["gpt-4o*"],
            "rate_limit": {"requests_per_minute": 60},
            "budget": 5.5,
            "metadata": {"team": "a"},
        }
    )
    record, secret = store.create(spec)
    assert secret.startswith("sk-crabllm-") and len(secret) > 40
    assert record.key_hash == hash_key(secret) and secret not in repr(record)
    assert record.key_prefix == secret[:14]
    assert store.find(hash_key(secret)).name == "team-a"
    assert store.find(hash_key(secret + "x")) is None

    with pytest.raises(ConflictError):
        store.create(NewKey(name="team-a"))
    with pytest.raises(NotFoundError):
        store.get("nobody")
    with pytest.raises(NotFoundError):
        store.revoke("nobody")
    with pytest.raises(NotFoundError):
        store.update("nobody", KeyUpdate(budget=1))

    updated = store.update(
        "team-a", KeyUpdate.model_validate({"budget": None, "models": ["mock"]})
    )
    assert updated.budget is None and updated.models == ("mock",)
    assert updated.requests_per_minute == 60 and updated.metadata == {"team": "a"}

    revoked = store.revoke("team-a")
    again = store.revoke("team-a")
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    assert store.get("team-a").status(revoked.revoked_at + 1) == "revoked"
    assert store.count() == 1


def test_config_reload_updates_fields_but_a_revocation_sticks(open_db):
    store = KeyStore(open_db())
    store.start([_cfg("cfg", "sk-config-1111", models=["a"])])
    store.revoke("cfg")
    store.create(NewKey(name="api-made"))
    # A restart with changed config: fields follow the config, revocation stays,
    # and a config key cannot take over a key made through the admin API.
    restarted = KeyStore(open_db())
    problems = restarted.start(
        [
            _cfg("cfg", "sk-config-2222", models=["b"]),
            _cfg("api-made", "sk-config-3333"),
        ]
    )
    cfg = restarted.get("cfg")
    assert cfg.models == ("b",) and cfg.key_hash == hash_key("sk-config-2222")
    assert cfg.revoked_at is not None
    assert restarted.get("api-made").source == "api"
    assert len(problems) == 1 and "api-made" in problems[0]


def test_usage_records_survive_reopening(open_db):
    db = open_db()
    db.migrate()
    row = {
        "request_id": "r1",
        "ts": 1000.0,
        "key_name": "team-a",
        "model": "gpt-4o",
        "endpoint": "chat",
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_nanos": 1500,
    }
    db.insert_usage([row, {**row, "request_id": "r2"}, row])  # r1 twice: once
    db.close()
    again = open_db()
    totals = again.usage_totals()
    assert [(t["key_name"], t["requests"], t["input_tokens"]) for t in totals] == [
        ("team-a", 2, 20)
    ]


def test_sqlite_locked_database_is_503_then_recovers(tmp_path):
    path = tmp_path / "gw.db"
    store = KeyStore(Database(f"sqlite:///{path}"))
    store.start()
    store.create(NewKey(name="k"))
    store.db.db.init(str(path), pragmas={"busy_timeout": 100}, timeout=0.1)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ServiceUnavailableError):
            store.create(NewKey(name="k2"))
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.create(NewKey(name="k2"))[0].name == "k2"


def test_postgres_down_is_503_then_recovers(postgres):
    url = postgres.create_database(f"t{next(_names)}")
    store = KeyStore(Database(url))
    store.start()
    record, secret = store.create(NewKey(name="k"))
    postgres.stop()
    try:
        with pytest.raises(ServiceUnavailableError):
            store.find(hash_key(secret))
        with pytest.raises(ServiceUnavailableError):
            store.create(NewKey(name="k2"))
    finally:
        postgres.start()
    wait_for(lambda: _finds(store, secret), timeout=30, what="postgres recovery")
    assert store.get("k").name == "k"


def _finds(store: KeyStore, secret: str) -> bool:
    try:
        return store.find(hash_key(secret)) is not None
    except ServiceUnavailableError:
        return False


def test_concurrent_creates_of_one_name_give_one_key_and_409s(open_db):
    stores = [KeyStore(open_db()) for _ in range(6)]
    stores[0].start()
    results: list[str] = []
    go = threading.Barrier(len(stores))

    def create(store: KeyStore) -> None:
        go.wait()
        try:
            store.create(NewKey(name="same"))
            results.append("created")
        except ConflictError:
            results.append("conflict")
        except Exception as exc:  # noqa: BLE001 - any other outcome fails below
            results.append(repr(exc))

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == ["conflict"] * 5 + ["created"]
    assert stores[0].count() == 1


def test_metadata_and_models_roundtrip_unicode(open_db):
    store = KeyStore(open_db())
    meta = {"owner": "Zoë", "tags": ["α", "β"], "nested": {"n": 1.5, "ok": True}}
    store.create(NewKey(name="u", models=["modèle-*"], metadata=meta))
    again = KeyStore(open_db()).get("u")
    assert again.metadata == meta and again.models == ("modèle-*",)
