"""The first-run crabllm.toml: admin token, one key, providers from env, mock."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path

# Providers offered when their credentials are in the environment.
_FROM_ENV = (
    (
        "OPENAI_API_KEY",
        "openai",
        "openai",
        ["gpt-4o", "gpt-4o-mini", "text-embedding-3-small"],
    ),
    (
        "ANTHROPIC_API_KEY",
        "anthropic",
        "anthropic",
        ["claude-sonnet-4-20250514", "claude-3-5-haiku-20241022"],
    ),
    ("GEMINI_API_KEY", "google", "google", ["gemini-2.0-flash", "gemini-2.5-pro"]),
)


def new_key() -> str:
    return "sk-crabllm-" + secrets.token_urlsafe(24)


def starter_config(
    env: Mapping[str, str], listen: str = "127.0.0.1:8080"
) -> tuple[str, str]:
    """The starter TOML text and the virtual key it contains."""
    key = new_key()
    admin = secrets.token_urlsafe(32)
    parts = [
        "# crabllm-sync starter config, written by `crabllm-sync init`.",
        "# Reference: docs/configuration.md. This file holds secrets: keep it 0600.",
        "",
        "# Where the gateway listens (`serve --bind` overrides it).",
        f'listen = "{listen}"',
        "# The admin token: /v1/admin/* (keys, providers, usage), /metrics and the",
        "# console at /ui.",
        f'admin_token = "{admin}"',
        "",
        "# Keys, usage and providers added at run time live in this database.",
        "[storage]",
        'kind = "sqlite"',
        'path = "crabllm.db"',
        "",
        '# Offline model: answers with no account. Try model "mock".',
        "[providers.mock]",
        'kind = "mock"',
        'models = ["mock"]',
    ]
    for var, name, kind, models in _FROM_ENV:
        if env.get(var):
            parts += [
                "",
                f"[providers.{name}]",
                f'kind = "{kind}"',
                f'api_key = "${{{var}}}"',
                f"models = {_toml_list(models)}",
            ]
    if (
        env.get("AWS_ACCESS_KEY_ID")
        or env.get("AWS_PROFILE")
        or (Path(env.get("HOME", "~")).expanduser() / ".aws" / "credentials").exists()
    ):
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        parts += [
            "",
            "[providers.bedrock]",
            'kind = "bedrock"',
            f'region = "{region}"',
            'models = ["anthropic.claude-3-5-haiku-20241022-v1:0"]',
        ]
    parts += [
        "",
        "# Any OpenAI-compatible server; without `models` its /models is read.",
        "# [providers.local]",
        '# kind = "openai"',
        '# base_url = "http://127.0.0.1:11434/v1"',
        "",
        "# One virtual key for your applications (more: `crabllm-sync keys create`).",
        "[[keys]]",
        'name = "default"',
        f'key = "{key}"',
        'models = ["*"]',
        "",
        "# Usage and cost per key and model: GET /v1/usage, `crabllm-sync usage`.",
        "[extensions.usage]",
        "",
        "# The request log the console shows (kept 30 days; bodies off).",
        "[extensions.audit]",
        "retention_days = 30",
        "",
    ]
    return "\n".join(parts), key


def write_starter(
    path: Path, env: Mapping[str, str] | None = None, listen: str = "127.0.0.1:8080"
) -> str:
    """Write the starter config (mode 0600) and return its virtual key."""
    text, key = starter_config(os.environ if env is None else env, listen)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return key


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in items) + "]"
