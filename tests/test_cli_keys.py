"""`crabllm-sync keys ...` and `crabllm-sync usage` with CliRunner on a tmp config."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from crabllm_sync.cli import main
from crabllm_sync.db import Database
from crabllm_sync.keys.model import hash_key
from tests.conftest import write_toml


@pytest.fixture
def config(tmp_path):
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
[storage]
kind = "sqlite"
path = "{tmp_path / "gw.db"}"

[providers.local]
kind = "mock"
models = ["mock"]

[[keys]]
name = "from-config"
key = "sk-config-secret-1"
""",
    )


def run(config, *args, ok=True):
    result = CliRunner().invoke(main, [*args, "--config", str(config)])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def k(config, *args, **kw):
    return run(config, "keys", *args, **kw)


def test_create_prints_the_secret_and_stores_only_its_hash(config, tmp_path):
    out = k(config, "create", "team-a", "--models", "gpt-4o*,mock", "--rpm", "60")
    secret = out.stdout.strip()
    assert secret.startswith("sk-crabllm-") and "\n" not in secret
    raw = (tmp_path / "gw.db").read_bytes()
    assert secret.encode() not in raw
    db = Database(f"sqlite:///{tmp_path / 'gw.db'}")
    with db.db.connection_context():
        row = db.m.ApiKey.get(db.m.ApiKey.name == "team-a")
    assert row.key_hash == hash_key(secret)
    assert json.loads(row.models) == ["gpt-4o*", "mock"]
    assert row.requests_per_minute == 60


def test_list_show_update_revoke(config):
    k(config, "create", "team-a", "--budget", "5", "--expires-at", "2031-02-03")
    listed = k(config, "list").output
    assert "team-a" in listed and "from-config" in listed and "config" in listed
    data = json.loads(k(config, "list", "--json").output)
    assert {d["name"] for d in data} == {"team-a", "from-config"}
    assert all("key" not in d and "key_hash" not in d for d in data)

    shown = json.loads(k(config, "show", "team-a", "--json").output)
    assert shown["budget"] == 5.0 and shown["expires_at"] == "2031-02-03T00:00:00Z"

    k(config, "update", "team-a", "--rpm", "10")
    k(config, "update", "team-a", "--tpm", "99", "--models", "a", "--models", "b")
    shown = json.loads(k(config, "show", "team-a", "--json").output)
    assert shown["rate_limit"] == {"requests_per_minute": 10, "tokens_per_minute": 99}
    assert shown["models"] == ["a", "b"]

    k(config, "update", "team-a", "--clear", "budget", "--clear", "expires_at")
    shown = json.loads(k(config, "show", "team-a", "--json").output)
    assert shown["budget"] is None and shown["expires_at"] is None

    out = k(config, "revoke", "team-a").output
    assert "revoked key 'team-a'" in out
    assert (
        json.loads(k(config, "show", "team-a", "--json").output)["status"] == "revoked"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "from-config"), "already exists"),
        (("show", "ghost"), "no key named 'ghost'"),
        (("revoke", "ghost"), "no key named 'ghost'"),
        (("update", "ghost", "--rpm", "1"), "no key named 'ghost'"),
        (("create", "../x"), "name"),
        (("create", "ok", "--rpm", "0"), "rate_limit"),
        (("create", "ok", "--budget", "-3"), "budget"),
        (("create", "ok", "--expires-at", "someday"), "expires_at"),
        (("create", "ok", "--metadata", "{bad"), "metadata"),
        (("update", "from-config"), "nothing to change"),
        (("update", "from-config", "--rpm", "5"), "defined in the config file"),
        (("create", "admin"), "reserved for the admin token"),
        (("create", "ok", "--budget", "inf"), "budget"),
        (("create", "ok", "--budget", "nan"), "budget"),
        (("create", "ok", "--metadata", '{"n": 1e999999}'), "metadata"),
        (("create", "ok", "--metadata", "[1]"), "metadata"),
    ],
)
def test_bad_input_exits_nonzero_with_a_clear_message(config, args, message):
    result = k(config, *args, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_memory_storage_is_refused_with_a_reason(tmp_path):
    cfg = write_toml(tmp_path / "c.toml", '[storage]\nkind = "memory"\n')
    result = k(cfg, "list", ok=False)
    assert result.exit_code == 1 and "admin API" in result.output


def test_broken_config_is_a_clean_error(tmp_path):
    cfg = write_toml(tmp_path / "c.toml", "[storage]\nkind = 'floppy'\n")
    result = k(cfg, "list", ok=False)
    assert result.exit_code == 1 and "storage.kind" in result.output


def test_usage_table_json_and_filters(config, tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'gw.db'}")
    db.migrate()
    now = time.time()
    rows = [
        ("r1", now - 10, "team-a", "gpt-4o", 100, 20, 1_500_000_000),
        ("r2", now - 5, "team-a", "gpt-4o", 50, 10, 500_000_000),
        ("r3", now - 5, "team-b", "mock", 7, 3, 0),
        ("r4", now - 86400 * 3, "team-b", "mock", 1000, 1000, 0),
    ]
    db.insert_usage(
        [
            {
                "request_id": rid,
                "ts": ts,
                "key_name": key,
                "model": model,
                "endpoint": "chat",
                "input_tokens": inp,
                "output_tokens": out,
                "cost_nanos": cost,
            }
            for rid, ts, key, model, inp, out, cost in rows
        ]
    )
    db.close()
    table = run(config, "usage").output.splitlines()
    assert table[0].split() == [
        "KEY",
        "MODEL",
        "REQUESTS",
        "INPUT",
        "OUTPUT",
        "COST_USD",
    ]
    assert table[1].split() == ["team-a", "gpt-4o", "2", "150", "30", "2.000000"]
    assert table[2].split() == ["team-b", "mock", "2", "1007", "1003", "0.000000"]
    assert table[3].split() == ["TOTAL", "4", "1157", "1033", "2.000000"]

    recent = json.loads(run(config, "usage", "--since", "1d", "--json").output)
    assert [(r["key_name"], r["requests"]) for r in recent] == [
        ("team-a", 2),
        ("team-b", 1),
    ]
    only = json.loads(run(config, "usage", "--key", "team-b", "--json").output)
    assert [(r["model"], r["output_tokens"]) for r in only] == [("mock", 1003)]
    by_model = json.loads(run(config, "usage", "--model", "gpt-4o", "--json").output)
    assert by_model[0]["cost_usd"] == 2.0
    result = run(config, "usage", "--since", "last tuesday", ok=False)
    assert result.exit_code == 2 and "--since" in result.output
