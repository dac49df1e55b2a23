"""Codex (OpenAI Responses API only: `wire_api = "responses"`) through the
gateway. Skipped while the gateway does not serve POST /v1/responses."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.agents.conftest import (
    ANTHROPIC,
    KEY,
    NATIVE_GOOGLE,
    OPENAI,
    Rig,
    one_turn_done,
    tool_task_done,
)
from tests.scripted import TOOL_MARKER

pytestmark = [pytest.mark.agents, pytest.mark.timeout(300)]

CONFIG = """\
model = "{model}"
model_provider = "crabllm"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.crabllm]
name = "crabllm-sync"
base_url = "{url}/v1"
env_key = "CRABLLM_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""


@pytest.fixture
def responses_served(rig: Rig) -> None:
    probe = httpx.post(
        f"{rig.url}/v1/responses", json={}, headers={"Authorization": f"Bearer {KEY}"}
    )
    if probe.status_code in (404, 405):
        pytest.skip(
            "Codex speaks only the OpenAI Responses API (POST /v1/responses), "
            "which this gateway does not serve yet"
        )


def codex(rig: Rig, model: str, prompt: str):
    home = rig.home / ".codex"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(CONFIG.format(model=model, url=rig.url))
    env = {"CRABLLM_KEY": KEY, "CODEX_HOME": str(home)}
    return rig.run(["codex", "exec", "--skip-git-repo-check", prompt], env)


def _read_notes(names: list[str], rig: Rig) -> tuple[str, dict[str, Any]]:
    """Codex's shell tool, under either of its names, reading notes.txt."""
    if "exec_command" in names:
        return "exec_command", {"cmd": f"cat {rig.notes}"}
    assert "shell" in names, f"Codex declared no shell tool: {names}"
    return "shell", {"command": ["cat", str(rig.notes)]}


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_codex_one_turn(rig, responses_served, model):
    proc = codex(rig, model, "say hello")
    one_turn_done(rig, proc)


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_codex_reads_a_file_with_its_shell_tool(rig, responses_served, model):
    rig.model.plan = lambda names: _read_notes(names, rig)
    proc = codex(rig, model, f"{TOOL_MARKER} what does notes.txt say?")
    tool_task_done(rig, proc)
