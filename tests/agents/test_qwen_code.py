"""Qwen Code (OpenAI chat completions) through the gateway: to an openai
provider as it is, translated to a google and an anthropic one."""

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

SETTINGS = {
    "security": {"auth": {"selectedType": "openai"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False},
}


def qwen(rig: Rig, model: str, prompt: str):
    settings = rig.home / ".qwen" / "settings.json"
    settings.parent.mkdir(exist_ok=True)
    settings.write_text(json.dumps(SETTINGS))
    env = {
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": f"{rig.url}/v1",
        "OPENAI_MODEL": model,
        "QWEN_TELEMETRY_ENABLED": "false",
        "QWEN_USAGE_STATISTICS_ENABLED": "false",
    }
    return rig.run(["qwen", "-m", model, "-p", prompt], env)


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_qwen_code_one_turn(rig, model):
    proc = qwen(rig, model, "say hello")
    one_turn_done(rig, proc)


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_qwen_code_reads_a_file_with_its_tool(rig, model):
    calls_to("read_file", lambda r: {"file_path": str(r.notes)}, rig)
    proc = qwen(rig, model, f"{TOOL_MARKER} what does notes.txt say?")
    tool_task_done(rig, proc)
