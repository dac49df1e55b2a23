"""The request log's store against a sqlite file and a real PostgreSQL:
batches with rollups, filters and the (ts, id) cursor, retention."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from crabllm_sync.audit.schema import DAY, HOUR
from crabllm_sync.audit.store import AuditStore, Cursor, LogFilter
from crabllm_sync.db import Database

_names = itertools.count()
T0 = 1_800_000_000.0  # an hour boundary


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[AuditStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"a{next(_names)}")
    db = Database(url)
    db.migrate()
    yield AuditStore(db)
    db.close()


def record(i: int, **over) -> dict:
    return {
        "request_id": f"r{i}",
        "ts": T0 + i,
        "key_name": "a" if i % 2 else "b",
        "model": "m",
        "provider": "p",
        "endpoint": "chat",
        "status": 502 if i % 5 == 0 else 200,
        "latency_ms": float(i),
        "input_tokens": 10,
        "output_tokens": 5,
        "cost_nanos": 1000,
        **over,
    }


def summed(rows: list[dict]) -> dict:
    keys = ("requests", "errors", "cost_nanos", "input_tokens")
    return {k: sum(r[k] for r in rows) for k in keys}


def test_batches_write_records_and_add_up_rollups(store):
    store.insert([record(i) for i in range(1, 11)])
    store.insert([record(i) for i in range(11, 21)])
    day = summed(store.totals(DAY, T0, T0 + DAY))
    assert day["requests"] == 20 and day["errors"] == 4
    assert day["cost_nanos"] == 20_000 and day["input_tokens"] == 200
    by_key = {
        r["name"]: r["requests"] for r in store.series(HOUR, T0, T0 + HOUR, "key_name")
    }
    assert by_key == {"a": 10, "b": 10}
    assert store.spend_by_key(T0, None) == {"a": 10_000, "b": 10_000}


def test_pages_follow_the_cursor_newest_first_with_filters(store):
    # Two records share a timestamp: the id breaks the tie, none is skipped.
    store.insert([record(i) for i in range(1, 8)] + [record(99, ts=T0 + 7)])
    seen, cursor = [], None
    while True:
        rows, cursor = store.page(LogFilter(), before=cursor, limit=3)
        seen += [r["request_id"] for r in rows]
        if cursor is None:
            break
        assert Cursor.parse(str(cursor)) == cursor
    assert seen == ["r99", "r7", "r6", "r5", "r4", "r3", "r2", "r1"]
    assert [r["request_id"] for r in store.page(LogFilter(key="a"))[0]] == [
        "r99",
        "r7",
        "r5",
        "r3",
        "r1",
    ]
    errors = store.page(LogFilter(status="5xx"))[0]
    assert [r["request_id"] for r in errors] == ["r5"]
    window = store.page(LogFilter(since=T0 + 3, until=T0 + 5))[0]
    assert [r["request_id"] for r in window] == ["r4", "r3"]
    assert [r["request_id"] for r in store.recent_errors(5, provider="p")] == ["r5"]


def test_prune_deletes_one_chunk_of_records_past_retention(store):
    store.insert([record(i) for i in range(1, 11)])
    assert store.prune(T0 + 6, chunk=3) == 3  # the oldest three
    assert store.prune(T0 + 6, chunk=3) == 2
    assert [r["request_id"] for r in store.page(LogFilter())[0]][-1] == "r6"
    assert summed(store.totals(DAY, T0, T0 + DAY))["requests"] == 10  # rollups kept


def test_a_cursor_that_is_not_one_does_not_parse():
    assert Cursor.parse("12.5_3") == Cursor(12.5, 3)
    for bad in ("", "x", "12.5", "_3", "nan_3", "1_0", "1_x"):
        assert Cursor.parse(bad) is None, bad
