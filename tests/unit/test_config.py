"""Config loading: crabllm compatibility, ${VAR}, errors naming field and line."""

from __future__ import annotations

import pytest

from crabllm_sync.config import ConfigError, expand_env, load_config, parse_config

CRABLLM_EXAMPLE = """\
listen = "0.0.0.0:8080"
shutdown_timeout = 30

[providers.openai]
kind = "openai"
api_key = "${OPENAI_API_KEY}"
models = ["gpt-4o", "gpt-4o-mini"]
weight = 2
max_retries = 2
timeout = 30

[providers.anthropic]
kind = "anthropic"
api_key = "${ANTHROPIC_API_KEY}"
models = ["claude-sonnet-4-20250514"]

[providers.ollama]
kind = "ollama"
models = ["llama3.2"]

[aliases]
gpt4 = "gpt-4o"
claude = "claude-sonnet-4-20250514"

[[keys]]
name = "default"
key = "${CRABTALK_API_KEY}"
models = ["*"]
rate_limit = { requests_per_minute = 60, tokens_per_minute = 100000 }

[pricing.gpt-4o]
prompt_cost_per_million = 2.50
completion_cost_per_million = 10.00

[extensions.cache]
ttl = 3600

[extensions.rate_limit]
rpm = 100

[extensions.usage]

[extensions.budget]
default_limit = 10000000

[extensions.logging]
level = "info"

[storage]
kind = "sqlite"
path = "crabllm.db"
"""


def _write(tmp_path, text):
    p = tmp_path / "crabllm.toml"
    p.write_text(text)
    return p


def test_crabllm_example_loads_unchanged(tmp_path):
    env = {
        "OPENAI_API_KEY": "sk-o",
        "ANTHROPIC_API_KEY": "sk-a",
        "CRABTALK_API_KEY": "sk-team-secret",
    }
    config = load_config(_write(tmp_path, CRABLLM_EXAMPLE), env)
    assert config.providers["openai"].api_key == "sk-o"
    assert config.providers["openai"].weight == 2
    assert config.keys[0].key == "sk-team-secret"
    assert config.keys[0].rate_limit.requests_per_minute == 60
    assert config.extensions.cache.ttl_seconds == 3600  # crabllm's `ttl`
    assert config.extensions.rate_limit.requests_per_minute == 100  # crabllm's `rpm`
    assert config.storage.kind == "sqlite"
    assert any("default_limit" in w for w in config.warnings())


def test_crabllm_only_fields_are_accepted_with_a_warning(tmp_path):
    text = (
        'openapi = true\ncloud_models = ["x"]\n'
        '[providers.m]\nkind = "mock"\nmodels = ["m"]\n'
    )
    config = load_config(_write(tmp_path, text), {})
    warnings = " ".join(config.warnings())
    assert "openapi" in warnings and "cloud_models" in warnings


def test_unknown_variable_expands_to_empty():
    assert expand_env({"a": ["x${NOPE}y", "${A}"]}, {"A": "1"}) == {"a": ["xy", "1"]}


def test_unknown_field_names_field_and_line(tmp_path):
    text = '[providers.a]\nkind = "openai"\nmodles = ["x"]\n'
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text), {})
    msg = str(exc.value)
    assert (
        "crabllm.toml:3" in msg
        and "providers.a.modles" in msg
        and "unknown field" in msg
    )


def test_wrong_type_names_field(tmp_path):
    text = '[providers.a]\nkind = "openai"\nmodels = ["x"]\ntimeout = "soon"\n'
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text), {})
    assert "crabllm.toml:4" in str(exc.value) and "providers.a.timeout" in str(
        exc.value
    )


def test_custom_kind_requires_base_url(tmp_path):
    text = '[providers.local]\nkind = "vllm"\nmodels = ["x"]\n'
    with pytest.raises(ConfigError, match="providers.local.base_url"):
        load_config(_write(tmp_path, text), {})


def test_alias_to_unserved_model_is_an_error(tmp_path):
    text = '[providers.a]\nkind = "mock"\nmodels = ["x"]\n[aliases]\nfast = "y"\n'
    with pytest.raises(ConfigError, match="alias 'fast' points at 'y'"):
        load_config(_write(tmp_path, text), {})


def test_duplicate_key_names_are_an_error(tmp_path):
    text = (
        '[[keys]]\nname = "a"\nkey = "sk-12345678"\n'
        '[[keys]]\nname = "a"\nkey = "sk-87654321"\n'
    )
    with pytest.raises(ConfigError, match="duplicate key name 'a'"):
        load_config(_write(tmp_path, text), {})


def test_a_config_key_named_admin_is_an_error(tmp_path):
    text = '[[keys]]\nname = "Admin"\nkey = "sk-12345678"\n'
    with pytest.raises(ConfigError, match="keys.0.name: the name 'admin' is reserved"):
        load_config(_write(tmp_path, text), {})


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(_write(tmp_path, "listen = \n"), {})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", {})


def test_every_configured_token_is_a_secret_to_redact():
    from crabllm_sync.pipeline.finish import config_secrets

    config = parse_config(
        {
            "admin_token": "admin-token-0123456789",
            "metrics_token": "metrics-token-0123456789",
            "providers": {"p": {"kind": "openai", "api_key": "sk-provider-0123456789"}},
            "keys": [{"name": "a", "key": "sk-key-a-0123456789"}],
        },
        {},
    )
    assert set(config_secrets(config)) == {
        "admin-token-0123456789",
        "metrics-token-0123456789",
        "sk-provider-0123456789",
        "sk-key-a-0123456789",
    }
