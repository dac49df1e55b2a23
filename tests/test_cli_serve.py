"""`crabllm-sync check` in-process, and `crabllm-sync serve` as a user runs it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import openai
from click.testing import CliRunner

from crabllm_sync.cli import main
from tests.conftest import ROOT, free_port

GOOD = '[providers.m]\nkind = "mock"\nmodels = ["mock"]\n'


def test_check_accepts_a_good_config(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(GOOD)
    p.chmod(0o600)
    result = CliRunner().invoke(main, ["check", "--config", str(p)])
    assert result.exit_code == 0, result.output
    assert "ok (1 providers, 1 models, 0 keys)" in result.output


def test_check_names_the_bad_field_and_exits_1(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(GOOD + "weight = -1\n")
    result = CliRunner().invoke(main, ["check", "--config", str(p)])
    assert result.exit_code == 1
    assert "c.toml:4: providers.m.weight" in result.output
    assert "Traceback" not in result.output


def test_check_warns_about_a_short_admin_token_and_a_readable_file(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('admin_token = "short"\n' + GOOD)
    p.chmod(0o644)
    result = CliRunner().invoke(main, ["check", "--config", str(p)])
    assert result.exit_code == 0
    assert "shorter than 32 characters" in result.output
    assert "readable by other users" in result.output


def test_check_warns_about_models_without_a_price(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text(
        '[providers.az]\nkind = "azure"\nbase_url = "https://x.openai.azure.com"\n'
        'models = ["my-gpt4o-deployment", "gpt-4o", "priced-here"]\n'
        "[pricing.priced-here]\nprompt_cost_per_million = 1.0\n" + GOOD
    )
    p.chmod(0o600)
    result = CliRunner().invoke(main, ["check", "--config", str(p)])
    assert result.exit_code == 0, result.output
    assert "model 'my-gpt4o-deployment' has no price" in result.output
    assert "keys with a budget are refused it" in result.output
    # Priced in config or in the built-in table, or the free mock provider.
    assert "'gpt-4o'" not in result.output
    assert "'priced-here'" not in result.output
    assert "'mock'" not in result.output


def test_serve_writes_a_starter_config_and_answers_with_its_key(tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GEMINI_API_KEY",
        "CRABLLM_CONFIG",
    ):
        env.pop(var, None)
    env["HOME"] = str(tmp_path)  # no ~/.aws here
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crabllm_sync.cli",
            "serve",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output = _wait_ready(proc, f"http://127.0.0.1:{port}")
        config = (tmp_path / "crabllm.toml").read_text()
        assert oct((tmp_path / "crabllm.toml").stat().st_mode & 0o777) == "0o600"
        key = re.search(r"Your virtual key: (\S+)", output).group(1)
        assert f'key = "{key}"' in config and 'kind = "mock"' in config
        assert 'kind = "sqlite"' in config and "admin_token" in config
        # The console's address and where its sign-in token is.
        assert f"Console: http://127.0.0.1:{port}/ui/" in output
        assert f"admin_token in {tmp_path / 'crabllm.toml'}" in output
        console = httpx.get(f"http://127.0.0.1:{port}/ui/login")
        assert console.status_code == 200 and "Sign in" in console.text
        client = openai.OpenAI(
            api_key=key, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        )
        out = client.chat.completions.create(
            model="mock", messages=[{"role": "user", "content": "hello"}]
        )
        assert out.choices[0].message.content == "Mock reply: hello"
        wrong = openai.OpenAI(
            api_key="sk-wrong-key",
            base_url=f"http://127.0.0.1:{port}/v1",
            max_retries=0,
        )
        try:
            wrong.models.list()
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError:
            pass
        # Idle keep-alive connections would hold graceful shutdown open.
        client.close()
        wrong.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(40)


def _wait_ready(proc, url: str, timeout: float = 30.0) -> str:
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        buf += proc.stdout.read() or b""
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {buf.decode(errors='replace')}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return (buf + (proc.stdout.read() or b"")).decode()
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"serve never became ready: {buf.decode(errors='replace')}")


def test_init_writes_a_0600_starter_config_that_check_accepts(tmp_path, monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws here
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    p = tmp_path / "crabllm.toml"
    result = CliRunner().invoke(main, ["init", "--config", str(p)])
    assert result.exit_code == 0, result.output
    assert oct(p.stat().st_mode & 0o777) == "0o600"
    key = re.search(r"Your virtual key: (\S+)", result.output).group(1)
    text = p.read_text()
    assert f'key = "{key}"' in text and 'kind = "mock"' in text
    assert 'kind = "sqlite"' in text and "admin_token" in text
    # A provider whose key is in the environment, referenced, not copied.
    assert 'api_key = "${OPENAI_API_KEY}"' in text and "sk-from-env" not in text
    assert "\n# " in text  # commented for the reader
    checked = CliRunner().invoke(main, ["check", "--config", str(p)])
    assert checked.exit_code == 0, checked.output
    assert "warning" not in checked.output


def test_init_refuses_to_overwrite_an_existing_config(tmp_path):
    p = tmp_path / "crabllm.toml"
    p.write_text(GOOD)
    result = CliRunner().invoke(main, ["init", "--config", str(p)])
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert p.read_text() == GOOD
