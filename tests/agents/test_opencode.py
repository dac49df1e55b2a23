"""opencode (OpenAI chat completions through its openai-compatible provider)
through the gateway: to an openai provider, translated to google and anthropic."""

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


def config(rig: Rig) -> dict:
    """The gateway as one opencode provider, each model by its gateway name."""
    models = {
        m: {"name": m, "tool_call": True} for m in (OPENAI, NATIVE_GOOGLE, ANTHROPIC)
    }
    return {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "provider": {
            "crabllm": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "crabllm-sync",
                "options": {"baseURL": f"{rig.url}/v1", "apiKey": "{env:CRABLLM_KEY}"},
                "models": models,
            }
        },
    }


def opencode(rig: Rig, model: str, prompt: str):
    env = {
        "CRABLLM_KEY": KEY,
        "OPENCODE_CONFIG_CONTENT": json.dumps(config(rig)),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_SHARE": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    }
    return rig.run(["opencode", "run", "-m", f"crabllm/{model}", prompt], env)


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_opencode_one_turn(rig, model):
    proc = opencode(rig, model, "say hello")
    one_turn_done(rig, proc)


@pytest.mark.parametrize("model", [OPENAI, NATIVE_GOOGLE, ANTHROPIC])
def test_opencode_reads_a_file_with_its_tool(rig, model):
    calls_to("read", lambda r: {"filePath": str(r.notes)}, rig)
    proc = opencode(rig, model, f"{TOOL_MARKER} what does notes.txt say?")
    tool_task_done(rig, proc)
