"""Claude Code (Anthropic Messages) through the gateway: natively to an
anthropic provider, translated to an openai and a google one. Its betas are
left on (CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS unset): the gateway must take
its first request as it is."""

from __future__ import annotations

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


def claude(rig: Rig, model: str, prompt: str):
    env = {
        "ANTHROPIC_BASE_URL": rig.url,
        "ANTHROPIC_API_KEY": KEY,
        # Its background calls (titles, summaries) go to the same model.
        "ANTHROPIC_SMALL_FAST_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    return rig.run(["claude", "-p", prompt, "--model", model], env)


@pytest.mark.parametrize("model", [ANTHROPIC, OPENAI, NATIVE_GOOGLE])
def test_claude_code_one_turn(rig, model):
    proc = claude(rig, model, "say hello")
    one_turn_done(rig, proc)


@pytest.mark.parametrize("model", [ANTHROPIC, OPENAI, NATIVE_GOOGLE])
def test_claude_code_reads_a_file_with_its_tool(rig, model):
    calls_to("Read", lambda r: {"file_path": str(r.notes)}, rig)
    proc = claude(rig, model, f"{TOOL_MARKER} what does notes.txt say?")
    tool_task_done(rig, proc)
