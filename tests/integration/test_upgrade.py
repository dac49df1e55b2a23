"""A database made by the previous release (schema version 2, commit 137659e:
keys and usage rows, dumped as SQL by tests/fixtures/old_release/build.py)
upgrades in place: today's migrate() applies 3-6, the old keys still
authenticate (a revoked one still does not) and every usage answer equals a
recount of the old raw rows."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from crabllm_sync.app import create_app
from crabllm_sync.db import MIGRATIONS, Database
from tests.conftest import make_config

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "old_release"
SECRETS = {
    "team-a": "sk-old-release-team-a-0123456789abcdef",
    "team-b": "sk-old-release-team-b-0123456789abcdef",
    "gone": "sk-old-release-gone-00-0123456789abcdef",
}
ADMIN = "admin-token-for-the-upgrade-test-0123456789"
START = 1_764_547_200 - 5 * 3600  # the fixture's first row (build.py)
_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def old_db(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of a database holding the old release's dump."""
    if request.param == "sqlite":
        path = tmp_path / "old.db"
        conn = sqlite3.connect(path)
        conn.executescript((FIXTURES / "v2.sqlite.sql").read_text())
        conn.close()
        return f"sqlite:///{path}"
    import psycopg2

    pg = request.getfixturevalue("postgres")
    url = pg.create_database(f"old{next(_names)}")
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute((FIXTURES / "v2.postgresql.sql").read_text())
    conn.close()
    return url


def recount(db: Database, where: str = "", args: tuple[Any, ...] = ()) -> dict:
    """(key, model) -> (requests, tokens in, tokens out, cost) from raw rows."""
    sql = (
        "SELECT key_name, model, COUNT(*), SUM(input_tokens + cache_read_tokens"
        " + cache_write_tokens), SUM(output_tokens), SUM(cost_nanos)"
        f' FROM "usage" {where} GROUP BY key_name, model'
    )
    with db.db.connection_context():
        rows = db.db.execute_sql(sql, args).fetchall()
    return {(r[0], r[1]): tuple(int(v) for v in r[2:]) for r in rows}


def answered(data: list[dict[str, Any]]) -> dict:
    return {
        (r["key"], r["model"]): (
            r["requests"],
            r["prompt_tokens"],
            r["completion_tokens"],
            r["cost_nanos"],
        )
        for r in data
    }


def test_the_previous_release_upgrades_in_place(old_db):
    db = Database(old_db)
    with db.db.connection_context():
        versions = [r.version for r in db.m.SchemaVersion.select()]
    assert versions == [1, 2]  # the old release's schema, as dumped
    before = recount(db)
    assert sum(v[0] for v in before.values()) == 240
    db.migrate()
    with db.db.connection_context():
        versions = sorted(r.version for r in db.m.SchemaVersion.select())
    assert versions == sorted(MIGRATIONS)
    assert recount(db) == before  # the raw rows are untouched

    config = make_config(
        {
            "admin_token": ADMIN,
            "providers": {},
            "storage": {"kind": "memory", "database": old_db},
            "extensions": {"usage": {}},
        }
    )
    client = create_app(config).test_client()

    def get(path: str, secret: str) -> Any:
        return client.get(path, headers={"Authorization": f"Bearer {secret}"})

    # The old keys authenticate and see their own usage; the revoked one is out.
    for name in ("team-a", "team-b"):
        r = get("/v1/usage", SECRETS[name])
        assert r.status_code == 200, r.data
        mine = {k: v for k, v in before.items() if k[0] == name}
        assert mine and answered(r.json["data"]) == mine
    assert get("/v1/usage", SECRETS["gone"]).status_code == 401

    r = get("/v1/admin/usage", ADMIN)
    assert r.status_code == 200 and answered(r.json["data"]) == before

    # A period with raw minutes, whole hours and a whole day, from the rollups
    # the migration backfilled, equals the recount over the same period.
    since, until = START + 1234.5, START + 30 * 3600 + 77.25
    r = get(f"/v1/admin/usage?from={since}&to={until}", ADMIN)
    assert r.status_code == 200
    assert answered(r.json["data"]) == recount(
        db, f"WHERE ts >= {db.db.param} AND ts < {db.db.param}", (since, until)
    )
    db.close()


def test_crabllm_sync_migrate_upgrades_before_the_gateway_starts(tmp_path):
    from click.testing import CliRunner

    from crabllm_sync.cli import main

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "v2.sqlite.sql").read_text())
    conn.close()
    config = tmp_path / "crabllm.toml"
    config.write_text(f'[storage]\nkind = "sqlite"\npath = "{path}"\n')
    done = CliRunner().invoke(main, ["migrate", "--config", str(config)])
    assert done.exit_code == 0, done.output
    assert done.output.strip() == f"schema version {max(MIGRATIONS)}"
    db = Database(f"sqlite:///{path}")
    assert sum(r["requests"] for r in db.usage_totals(since=START)) == 240
    with db.db.connection_context():
        (n,) = db.db.execute_sql("SELECT COUNT(*) FROM usage_buckets").fetchone()
    assert n > 0  # the backfill ran
    db.close()
