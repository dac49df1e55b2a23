"""`crabllm-sync providers list|add|update|remove` on a sqlite database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from crabllm_sync.app import create_app
from crabllm_sync.cli import main
from crabllm_sync.config import load_config
from tests.conftest import write_toml

SECRET = "sk-cli-upstream-secret-0123456789"


def _config(tmp_path):
    return write_toml(
        tmp_path / "crabllm.toml",
        f"""
[storage]
kind = "sqlite"
path = "{tmp_path / "gw.db"}"

[providers.local]
kind = "mock"
models = ["mock"]
""",
    )


def run(config, *args, code=0):
    result = CliRunner().invoke(main, ["providers", *args, "--config", str(config)])
    assert result.exit_code == code, result.output
    return result.output


def test_add_update_list_remove_and_a_gateway_serves_the_result(tmp_path):
    config = _config(tmp_path)
    out = run(
        config,
        "add",
        "extra",
        "--kind",
        "mock",
        "--models",
        "m1,m2",
        "--api-key",
        SECRET,
    )
    assert "extra" in out and SECRET not in out
    run(config, "update", "extra", "--weight", "3", "--clear", "api_key")
    listed = json.loads(run(config, "list", "--json"))
    assert [(p["name"], p["source"]) for p in listed] == [
        ("local", "config"),
        ("extra", "api"),
    ]
    assert listed[1]["weight"] == 3 and listed[1]["api_key"] == ""
    assert listed[1]["models"] == ["m1", "m2"]
    app = create_app(load_config(config))
    try:
        assert app.extensions["crabllm"].registry.resolve("m2") == "m2"
    finally:
        app.extensions["crabllm"].close()
    assert "removed extra" in run(config, "remove", "extra")
    assert "extra" not in run(config, "list")


def test_a_bad_provider_is_refused_with_the_reason_and_exit_1(tmp_path):
    config = _config(tmp_path)
    out = run(config, "add", "x", "--kind", "custom-llm", code=1)
    assert "needs base_url" in out
    out = run(config, "remove", "local", code=1)
    assert "crabllm.toml" in out and "edit the file" in out
    assert "x\t" not in run(config, "list")
