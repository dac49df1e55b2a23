"""The Responses state store on every backend: memory and redis (the
extensions' Storage), sqlite and PostgreSQL (the SQL database, migration 3)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crabllm_sync.db import Database
from crabllm_sync.response_store import KvStore, SqlStore, Stored
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


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[tuple[object, Clock]]:
    clock = Clock()
    kind = request.param
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
