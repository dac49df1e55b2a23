"""The Responses state store on every backend: memory and redis (the
extensions' Storage), sqlite and PostgreSQL (the SQL database, migration 3),
and the SQL store written in batches (response_writer.py): read-your-writes
from the worker's buffer, another worker's record found once flushed, an
outage survived in the buffer."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from crabllm_sync.db import Database
from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.extensions import batching
from crabllm_sync.response_store import KvStore, SqlStore, Stored
from crabllm_sync.response_writer import BufferedStore
from crabllm_sync.storage.memory import MemoryStorage
from crabllm_sync.storage.redis import RedisStorage
from tests.servers import RedisServer, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(
    params=["memory", "redis", "sqlite", "postgres", "sqlite-batched", "pg-batched"]
)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[object, Clock]]:
    clock = Clock()
    kind = request.param
    if kind.endswith("-batched"):
        url = f"sqlite:///{tmp_path / 'keys.db'}"
        if kind.startswith("pg"):
            url = request.getfixturevalue("postgres").url
        db = Database(url)
        db.migrate()
        batched = BufferedStore(SqlStore(db, clock), 0.05, miss_wait=0.1)
        yield batched, clock
        batched.close()
        db.close()
        return
    if kind == "memory":
        yield KvStore(MemoryStorage(), clock), clock
        return
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        storage = RedisStorage(server.url)
        yield KvStore(storage, clock), clock
        storage.close()
        return
    if kind == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    else:
        db = Database(request.getfixturevalue("postgres").url)
    db.migrate()
    db.migrate()  # idempotent: a second worker starting finds it done
    yield SqlStore(db, clock), clock
    db.close()


def record(rid: str, key: str, clock: Clock, ttl: float = 60) -> Stored:
    return Stored(
        id=rid,
        key=key,
        created_at=clock(),
        expires_at=clock() + ttl,
        response={"id": rid, "object": "response", "output": []},
        input_items=[{"id": "msg_1", "type": "message"}],
        conversation=[{"type": "message", "role": "user", "content": "hi"}],
    )


def test_a_stored_response_comes_back_whole_to_its_key(store):
    s, clock = store
    s.put(record("resp_a", "team", clock))
    got = s.get("resp_a", "team")
    assert got == record("resp_a", "team", clock)


def test_another_keys_response_is_not_found_nor_deleted(store):
    s, clock = store
    s.put(record("resp_b", "team", clock))
    assert s.get("resp_b", "other") is None
    assert s.delete("resp_b", "other") is False
    assert s.get("resp_b", "team") is not None


def test_an_expired_response_is_gone(store):
    s, clock = store
    s.put(record("resp_c", "team", clock, ttl=60))
    clock.now += 61
    assert s.get("resp_c", "team") is None
    assert s.delete("resp_c", "team") is False


def test_delete_removes_it_once(store):
    s, clock = store
    s.put(record("resp_d", "team", clock))
    assert s.delete("resp_d", "team") is True
    assert s.get("resp_d", "team") is None
    assert s.delete("resp_d", "team") is False


# -- written in batches ---------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    home = tmp_path / "db"
    home.mkdir()
    db = Database(f"sqlite:///{home / 'keys.db'}")
    db.migrate()
    db.close()
    return f"sqlite:///{home / 'keys.db'}"


@pytest.fixture
def worker(sqlite_url) -> Iterator[Callable[..., BufferedStore]]:
    """A worker's batched store on the shared sqlite file; its flusher waits
    600 s, so only flush() and close() write (as if the worker were busy)."""
    made: list[tuple[BufferedStore, Database]] = []

    def make(clock: Clock, **kw: object) -> BufferedStore:
        db = Database(sqlite_url)
        s = BufferedStore(SqlStore(db, clock), 600, miss_wait=0.2, **kw)
        made.append((s, db))
        return s

    yield make
    for s, db in made:
        s.close()
        db.close()


def in_db(url: str, rid: str, key: str = "team") -> bool:
    db = Database(url)
    try:
        return SqlStore(db, Clock()).get(rid, key) is not None
    finally:
        db.close()


def test_a_put_waits_in_the_buffer_and_the_worker_reads_it_at_once(worker, sqlite_url):
    clock = Clock()
    s = worker(clock)
    s.put(record("resp_w1", "team", clock))
    assert not in_db(sqlite_url, "resp_w1")  # nothing written on the request path
    assert s.get("resp_w1", "team") == record("resp_w1", "team", clock)
    assert s.get("resp_w1", "other") is None  # another key's, even buffered
    assert s.writer.flush() is True
    assert in_db(sqlite_url, "resp_w1")
    assert s.writer.pending() == 0
    assert s.get("resp_w1", "team") == record("resp_w1", "team", clock)


def test_deleting_a_buffered_record_means_it_is_never_written(worker, sqlite_url):
    clock = Clock()
    s = worker(clock)
    s.put(record("resp_w2", "team", clock))
    s.put(record("resp_w3", "team", clock))
    assert s.delete("resp_w2", "other") is False
    assert s.delete("resp_w2", "team") is True
    assert s.get("resp_w2", "team") is None
    assert s.delete("resp_w2", "team") is False
    assert s.writer.flush() is True
    assert not in_db(sqlite_url, "resp_w2")
    assert in_db(sqlite_url, "resp_w3")  # the other record was kept


def test_another_worker_finds_a_record_once_its_owner_flushes(worker, sqlite_url):
    clock = Clock()
    owner = worker(clock)
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        # The reader's first miss; the owner's flusher runs meanwhile.
        polls.append(seconds)
        owner.writer.flush()

    reader = worker(clock, sleep=sleep)
    owner.put(record("resp_w4", "team", clock))
    assert reader.get("resp_w4", "team") == record("resp_w4", "team", clock)
    assert len(polls) == 1
    owner.put(record("resp_w5", "team", clock))
    assert reader.delete("resp_w5", "team") is True
    assert len(polls) == 2
    assert owner.get("resp_w5", "team") is None  # gone from the database too


def test_a_miss_is_final_after_miss_wait(worker):
    clock = Clock()
    s = worker(clock)
    started = time.monotonic()
    assert s.get("resp_nowhere", "team") is None
    assert s.delete("resp_nowhere", "team") is False
    took = time.monotonic() - started
    assert 2 * s.miss_wait <= took < 2 * s.miss_wait + 5


def test_records_wait_in_the_buffer_through_a_database_outage(
    worker, sqlite_url, tmp_path
):
    clock = Clock()
    s = worker(clock)
    for n in range(3):
        s.put(record(f"resp_o{n}", "team", clock))
    home, away = tmp_path / "db", tmp_path / "away"
    home.rename(away)  # the database file is unreachable
    assert s.writer.flush() is False
    assert s.writer.pending() == 3
    assert s.get("resp_o1", "team") is not None  # still served from the buffer
    with pytest.raises(ServiceUnavailableError):
        s.get("resp_elsewhere", "team")  # what is not buffered needs the database
    away.rename(home)  # it is back
    assert s.writer.flush() is True
    assert all(in_db(sqlite_url, f"resp_o{n}") for n in range(3))


def test_a_full_buffer_forgets_the_records_it_drops(
    worker, sqlite_url, tmp_path, monkeypatch
):
    monkeypatch.setattr(batching, "MAX_BUFFER", 2)
    clock = Clock()
    s = worker(clock)
    for n in range(3):
        s.put(record(f"resp_f{n}", "team", clock))
    (tmp_path / "db").rename(tmp_path / "away")
    assert s.writer.flush() is False  # the oldest of three is dropped
    (tmp_path / "away").rename(tmp_path / "db")
    assert s.writer.flush() is True
    assert s.get("resp_f0", "team") is None  # not served from a stale buffer
    assert not in_db(sqlite_url, "resp_f0")
    assert in_db(sqlite_url, "resp_f1") and in_db(sqlite_url, "resp_f2")


def test_close_writes_what_is_buffered(worker, sqlite_url):
    clock = Clock()
    s = worker(clock)
    s.put(record("resp_w6", "team", clock))
    s.close()  # worker exit
    assert in_db(sqlite_url, "resp_w6")
