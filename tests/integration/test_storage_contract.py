"""One Storage contract, run against memory, sqlite (a tmp file), a real redis,
a real Redis Cluster (3 primaries, 3 replicas) and a real Sentinel set-up."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.storage.memory import MemoryStorage
from crabllm_sync.storage.redis import RedisStorage
from crabllm_sync.storage.sqlite import SqliteStorage
from tests.redis_servers import RedisClusterServers, RedisSentinelServers
from tests.servers import RedisServer, Unavailable, wait_for


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    try:
        servers = RedisClusterServers()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    try:
        servers = RedisSentinelServers()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield servers
    servers.stop()


REDIS_KINDS = {
    "redis": "redis_server",
    "redis-cluster": "redis_cluster",
    "redis-sentinel": "redis_sentinel",
}


@pytest.fixture(params=["memory", "sqlite", *REDIS_KINDS])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def _flush(url: str) -> None:
    """Empty the store behind a redis storage URL (every primary of a cluster)."""
    s = RedisStorage(url)
    client = s._redis()
    if s.target.mode == "cluster":
        client.flushall(target_nodes=client.PRIMARIES)
    else:
        client.flushall()
    s.close()


@pytest.fixture
def make_store(
    kind: str, tmp_path, request: pytest.FixtureRequest
) -> Iterator[Callable[[], object]]:
    """A factory of stores that share one backend (memory: one shared instance)."""
    made: list[object] = []
    if kind in REDIS_KINDS:
        url = request.getfixturevalue(REDIS_KINDS[kind]).url
        _flush(url)
    shared = MemoryStorage()

    def make() -> object:
        if kind == "memory":
            return shared
        if kind == "sqlite":
            s: object = SqliteStorage(str(tmp_path / "kv.db"))
        else:
            s = RedisStorage(url)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


@pytest.fixture
def store(make_store):
    return make_store()


def test_get_of_a_missing_key_is_none(store):
    assert store.get("nope") is None


def test_set_then_get_roundtrips_bytes(store):
    value = bytes(range(256)) + b"\x00end"
    store.set("a:bin", value)
    assert store.get("a:bin") == value
    store.set("a:bin", b"second")
    assert store.get("a:bin") == b"second"


def test_set_with_ttl_expires(store):
    store.set("t:short", b"x", ttl=0.2)
    store.set("t:long", b"y", ttl=60)
    assert store.get("t:short") == b"x"
    wait_for(lambda: store.get("t:short") is None, timeout=10, what="expiry")
    assert store.get("t:long") == b"y"


def test_incr_creates_adds_and_reads_back_as_digits(store):
    assert store.incr("c:1") == 1
    assert store.incr("c:1", 41) == 42
    assert store.incr("c:1", -2) == 40
    assert store.get("c:1") == b"40"
    assert store.incr("c:new", 7) == 7


def test_incr_on_a_set_value_adds_to_it(store):
    store.set("c:set", b"10")
    assert store.incr("c:set", 5) == 15


def test_incr_ttl_applies_on_create_only(store):
    assert store.incr("w:1", 1, ttl=0.3) == 1
    assert store.incr("w:1", 1, ttl=3600) == 2  # does not extend the window
    wait_for(lambda: store.get("w:1") is None, timeout=10, what="window expiry")
    assert store.incr("w:1", 5, ttl=3600) == 5  # a new window starts at amount


def test_list_prefix_returns_only_live_keys_under_the_prefix(store):
    store.set("p:a", b"1")
    store.set("p:b", b"2")
    store.incr("p:c", 3)
    store.set("q:a", b"no")
    store.set("p:gone", b"x", ttl=0.2)
    wait_for(lambda: store.get("p:gone") is None, timeout=10, what="expiry")
    assert sorted(store.list_prefix("p:")) == [
        ("p:a", b"1"),
        ("p:b", b"2"),
        ("p:c", b"3"),
    ]
    assert store.list_prefix("zz:") == []


def test_list_prefix_treats_glob_characters_literally(store):
    store.set("g*[x]?:1", b"1")
    store.set("gA[x]?:1", b"2")
    store.set("g%_:1", b"3")
    store.set("gab:1", b"4")
    assert store.list_prefix("g*[x]?:") == [("g*[x]?:1", b"1")]
    assert store.list_prefix("g%_") == [("g%_:1", b"3")]


def test_delete_removes_and_missing_delete_is_fine(store):
    store.set("d:1", b"x")
    store.delete("d:1")
    store.delete("d:never")
    assert store.get("d:1") is None


def test_incr_is_atomic_across_clients(make_store):
    stores = [make_store() for _ in range(6)]
    per_thread = 150
    start = threading.Barrier(len(stores))

    def work(s) -> None:
        start.wait()
        for _ in range(per_thread):
            s.incr("race", 1, ttl=600)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert stores[0].get("race") == str(len(stores) * per_thread).encode()


def test_list_prefix_reads_keys_of_every_hash_slot(store):
    # 200 keys land on every cluster primary: no CROSSSLOT, none missed.
    for i in range(200):
        store.set(f"many:{i}", str(i).encode())
    store.set("manx:0", b"not under the prefix")
    listed = store.list_prefix("many:")
    assert sorted(listed) == sorted((f"many:{i}", str(i).encode()) for i in range(200))


# -- per-backend behaviour beyond the shared contract --------------------------


def _incr_many(path: str, n: int) -> None:
    s = SqliteStorage(path)
    for _ in range(n):
        s.incr("proc", 1)
    s.close()


def test_sqlite_incr_is_atomic_across_processes(tmp_path):
    path = str(tmp_path / "kv.db")
    SqliteStorage(path).set("proc", b"0")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_incr_many, args=(path, 200)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert SqliteStorage(path).get("proc") == b"800"


def test_sqlite_uses_wal_and_purges_expired_rows(tmp_path):
    now = [1000.0]
    path = str(tmp_path / "kv.db")
    s = SqliteStorage(path, clock=lambda: now[0])
    s.set("a", b"1", ttl=10)
    s.incr("b", 1, ttl=10)
    s.set("c", b"keep")
    now[0] += 11
    assert s.get("a") is None and s.list_prefix("") == [("c", b"keep")]
    assert s.purge_expired() == 2
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT key FROM kv").fetchall() == [("c",)]


def test_sqlite_survives_fork_with_a_fresh_connection(tmp_path):
    path = str(tmp_path / "kv.db")
    s = SqliteStorage(path)
    s.set("before", b"1")  # the parent's connection exists now
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=_incr_many, args=(path, 10))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert s.get("proc") == b"10"


def test_sqlite_locked_file_is_503_then_recovers(tmp_path):
    path = str(tmp_path / "kv.db")
    s = SqliteStorage(path, busy_timeout_ms=100)
    s.set("k", b"1")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ServiceUnavailableError) as info:
            s.incr("k")
        assert info.value.http_status == 503
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert s.incr("k") == 2


def test_sqlite_unusable_path_is_503(tmp_path):
    (tmp_path / "dir.db").mkdir()
    s = SqliteStorage(str(tmp_path / "dir.db"))
    with pytest.raises(ServiceUnavailableError):
        s.get("k")


def test_redis_down_is_a_quick_503_and_recovers(redis_server):
    s = RedisStorage(redis_server.url)
    s.set("k", b"1")
    redis_server.stop()
    try:
        for op in (lambda: s.get("k"), lambda: s.incr("k"), lambda: s.list_prefix("")):
            began = time.monotonic()
            with pytest.raises(ServiceUnavailableError) as info:
                op()
            assert info.value.http_status == 503
            # Not a timed claim about speed: a dead redis must not hang a request.
            assert time.monotonic() - began < 10
    finally:
        redis_server.start()
    wait_for(lambda: _works(s), timeout=20, what="redis storage recovery")
    assert s.incr("fresh", 2) == 2  # no persistence: a restarted redis is empty
    s.close()


def _works(s: RedisStorage) -> bool:
    try:
        s.get("k")
        return True
    except ServiceUnavailableError:
        return False


def test_redis_pool_is_rebuilt_after_fork(redis_server):
    s = RedisStorage(redis_server.url)
    s.set("fork", b"0")
    ctx = multiprocessing.get_context("fork")

    def child() -> None:
        for _ in range(20):
            s.incr("fork")

    p = ctx.Process(target=child)
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert s.get("fork") == b"20"
    s.close()


def test_a_failover_wait_is_one_window_then_503s_come_at_once():
    from tests.conftest import free_port

    # Sentinels that never answer: no primary can be found.
    s = RedisStorage(f"redis+sentinel://127.0.0.1:{free_port()}/m", failover_wait=0.6)
    began = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match="MasterNotFound|Connection"):
        s.get("k")
    first = time.monotonic() - began
    began = time.monotonic()
    with pytest.raises(ServiceUnavailableError):
        s.incr("k")
    second = time.monotonic() - began
    s.close()
    # The first waited out the window; the next, inside the same outage, did not.
    assert 0.6 - 0.4 <= first < 5, first
    assert second < 0.5, second
