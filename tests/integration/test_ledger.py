"""The usage rollups against a raw-row recount, on sqlite and PostgreSQL:
random rows in random batches (duplicates included), random filters and
periods; migration 6's backfill; retention with an injected clock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import peewee
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crabllm_sync.db import Database
from crabllm_sync.extensions.usage import PRUNE_EVERY, UsageRecorder
from crabllm_sync.ledger import schema
from crabllm_sync.ledger.plan import DAY, HOUR
from tests.fuzzing import examples

_names = itertools.count()
BASE = 1_760_000_400 - 1_760_000_400 % DAY + 5 * HOUR + 17  # inside an hour

KEYS = st.sampled_from([None, "team-a", "team-b", "Zed"])
MODELS = st.sampled_from(["gpt-4o", "claude", "m"])
# Two days around a midnight: periods often hold whole days, whole hours and
# raw minutes at once, and rows often fall in their edge hours.
MIDNIGHT = BASE - BASE % DAY
times = st.one_of(
    st.floats(MIDNIGHT - DAY, MIDNIGHT + DAY, allow_nan=False),
    st.integers(-24, 24).map(lambda h: MIDNIGHT + h * HOUR),
    st.integers(-24, 24).map(lambda h: MIDNIGHT + h * HOUR - 0.25),
)
rows = st.builds(
    lambda i, ts, key, model, n, c: {
        "request_id": f"r{i}",
        "ts": ts,
        "key_name": key,
        "model": model,
        "endpoint": "chat",
        "input_tokens": n,
        "cache_read_tokens": n // 3,
        "output_tokens": n // 2 + 1,
        "reasoning_tokens": n % 7,
        "cost_nanos": c,
        "images": n % 2,
        "characters": n % 11,
        "audio_ms": n * 3,
    },
    st.integers(0, 150),  # a small id space: duplicate request_ids happen
    times,
    KEYS,
    MODELS,
    st.integers(0, 10_000),
    st.integers(0, 10**12),
)
queries = st.fixed_dictionaries(
    {
        "key_name": st.one_of(st.none(), KEYS.filter(bool)),
        "model": st.one_of(st.none(), MODELS),
        "since": st.one_of(st.none(), times),
        "until": st.one_of(st.none(), times),
        "limit": st.one_of(st.none(), st.integers(1, 5)),
    }
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'gw.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(
            f"ledger{next(_names)}"
        )
    d = Database(url)
    d.migrate()
    yield d
    d.close()


def recount(db: Database, **q: Any) -> list[dict[str, Any]]:
    """The raw-row answer: usage_totals as it was before the rollups."""
    U = db.m.UsageRecord
    fn = peewee.fn
    sums = [
        fn.SUM(getattr(U, c)).alias(c)
        for c in (
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_nanos",
            "images",
            "characters",
            "audio_ms",
        )
    ]
    query = U.select(U.key_name, U.model, fn.COUNT(U.id).alias("requests"), *sums)
    conds = []
    if q["key_name"] is not None:
        conds.append(U.key_name == q["key_name"])
    if q["model"] is not None:
        conds.append(U.model == q["model"])
    if q["since"] is not None:
        conds.append(U.ts >= q["since"])
    if q["until"] is not None:
        conds.append(U.ts < q["until"])
    if conds:
        query = query.where(*conds)
    query = query.group_by(U.key_name, U.model).order_by(U.key_name, U.model)
    if q["limit"] is not None:
        query = query.limit(q["limit"])
    with db.db.connection_context():
        return [
            {k: v if k in ("key_name", "model") else int(v or 0) for k, v in r.items()}
            for r in query.dicts()
        ]


def _empty(db: Database) -> None:
    with db.db.connection_context():
        db.db.execute_sql("DELETE FROM usage")
        db.db.execute_sql(f"DELETE FROM {schema.TABLE}")


@settings(
    max_examples=examples(100),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    batches=st.lists(st.lists(rows, max_size=40), min_size=1, max_size=4),
    asks=st.lists(queries, min_size=1, max_size=12),
)
def test_rollup_answers_equal_a_raw_recount(db, batches, asks):
    _empty(db)
    for batch in batches:
        db.insert_usage(batch)
    everything = {
        "key_name": None,
        "model": None,
        "since": None,
        "until": None,
        "limit": None,
    }
    for q in [everything, *asks]:
        assert db.usage_totals(**q) == recount(db, **q), q


def test_a_retried_batch_adds_nothing_twice(db):
    row = {"request_id": "x", "ts": BASE, "model": "m", "endpoint": "chat"}
    db.insert_usage([row, {**row, "request_id": "y"}])
    db.insert_usage([row, {**row, "request_id": "y"}, {**row, "request_id": "z"}])
    assert [r["requests"] for r in db.usage_totals()] == [3]
    assert [r["requests"] for r in db.usage_totals(since=BASE - 1)] == [3]


def _buckets(db: Database) -> list[tuple[Any, ...]]:
    with db.db.connection_context():
        cur = db.db.execute_sql(
            f"SELECT * FROM {schema.TABLE} ORDER BY span, bucket, key_name, model"
        )
        return [tuple(int(v) if not isinstance(v, str) else v for v in r) for r in cur]


@settings(
    max_examples=examples(25),
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=st.lists(rows, max_size=40))
def test_the_backfill_builds_what_the_inserts_kept(db, batch, monkeypatch):
    _empty(db)
    db.insert_usage(batch)
    kept = _buckets(db)
    with db.db.connection_context():
        db.db.execute_sql(f"DELETE FROM {schema.TABLE}")
        with monkeypatch.context() as m:
            m.setattr(schema, "BACKFILL_ROWS", 7)  # several statements
            schema.backfill(db.db)
    assert _buckets(db) == kept


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_retention_prunes_raw_rows_in_chunks_and_keeps_the_totals(db, monkeypatch):
    import crabllm_sync.extensions.usage as usage_ext
    import crabllm_sync.ledger.store as ledger_store

    monkeypatch.setattr(ledger_store, "PRUNE_CHUNK", 3)
    monkeypatch.setattr(usage_ext, "PRUNE_CHUNK", 3)
    clock = Clock(BASE + 10 * DAY)
    old = [
        {
            "request_id": f"o{i}",
            "ts": BASE + i * 60.0,
            "model": "m",
            "endpoint": "c",
            "key_name": "team-a",
            "cost_nanos": 5,
        }
        for i in range(10)
    ]
    new = [
        {**r, "request_id": f"n{i}", "ts": clock.now - 60} for i, r in enumerate(old)
    ]
    first = UsageRecorder(None, db, retention_days=2, clock=clock)
    second = UsageRecorder(None, db, retention_days=2, clock=clock)
    assert db.usage_totals() == []
    first._store(old)  # the write the flusher makes; the sweep follows it
    second._store(new)  # within the same hour: the other worker does not sweep
    with db.db.connection_context():
        left = db.db.execute_sql("SELECT request_id FROM usage").fetchall()
    assert sorted(r[0] for r in left) == sorted(r["request_id"] for r in new)
    totals = db.usage_totals()
    assert [(t["requests"], t["cost_nanos"]) for t in totals] == [(20, 100)]
    # Period totals over the pruned days still come from the rollups.
    day = BASE - BASE % DAY
    assert db.usage_totals(since=day, until=day + DAY)[0]["requests"] == 10
    # Each hour's sweep is claimed by one worker only.
    assert db.claim_job("usage-retention", clock.now + 60, PRUNE_EVERY) is False
    clock.now += PRUNE_EVERY
    assert db.claim_job("usage-retention", clock.now, PRUNE_EVERY) is True
    assert db.claim_job("usage-retention", clock.now, PRUNE_EVERY) is False
