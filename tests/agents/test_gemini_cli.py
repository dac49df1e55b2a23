"""Gemini CLI (Google's Gemini API) through the gateway: natively to a google
provider and translated to an openai and an anthropic one."""

from __future__ import annotations

import json

import pytest

from tests.agents.conftest import (
    ANTHROPIC,
    KEY,
    NATIVE_GOOGLE,
    OPENAI,
    Rig,
    calls_to,
    one_turn_done,
    tool_task_done,
)
from tests.scripted import TOOL_MARKER

pytestmark = [pytest.mark.agents, pytest.mark.timeout(300)]

# Its own settings: API-key auth (a custom base URL needs it), nothing sent
# home, no update checks.
SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def gemini(rig: Rig, model: str, prompt: str):
    settings = rig.home / ".gemini" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps(SETTINGS))
    env = {
        "GEMINI_API_KEY": KEY,
        "GOOGLE_GEMINI_BASE_URL": rig.url,
        "GEMINI_TELEMETRY_ENABLED": "false",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",  # the temporary workspace
    }
    # An explicit -m: the default first asks a classifier model to pick one.
    return rig.run(["gemini", "-m", model, "-p", prompt], env)


@pytest.mark.parametrize("model", [NATIVE_GOOGLE, OPENAI, ANTHROPIC])
def test_gemini_cli_one_turn(rig, model):
    proc = gemini(rig, model, "say hello")
    one_turn_done(rig, proc)


@pytest.mark.parametrize("model", [NATIVE_GOOGLE, OPENAI, ANTHROPIC])
def test_gemini_cli_reads_a_file_with_its_tool(rig, model):
    calls_to("read_file", lambda r: {"file_path": str(r.notes)}, rig)
    proc = gemini(rig, model, f"{TOOL_MARKER} what does notes.txt say?")
    tool_task_done(rig, proc)
