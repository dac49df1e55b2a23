"""Real Responses API clients through the gateway, loopback only: Codex CLI
(`codex exec`, wire_api = "responses") and the OpenAI Agents SDK, both
answered by a bridged model on the Anthropic fake.

Codex is installed by npm into a cache directory on first use (pinned);
without npm the Codex test is skipped, saying so. Their telemetry and update
checks are off, and a proxy that answers nothing stands in for the outside
world (loopback is exempt), so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.agents.conftest import installed_or_skip
from tests.conftest import anthropic_provider, make_config
from tests.fakes import anthropic as fake_ant
from tests.upstream import Upstream

KEY = "sk-team-0123456789"
# Any request that is not to loopback goes to a port where nothing listens.
OFFLINE = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
}


@pytest.fixture(scope="session")
def codex_bin() -> Path:
    """The pinned Codex CLI: one pinned set of agents for every agent test
    (tests/agents/install.py), installed once."""
    return installed_or_skip() / "codex"


@pytest.fixture
def ant() -> Upstream:
    up = fake_ant.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def url(ant, app_factory, served) -> str:
    config = make_config(
        {
            "providers": {"an": anthropic_provider(ant, ["claude-x"])},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    return served(app_factory(config))


def _codex_home(home: Path, url: str) -> None:
    home.mkdir()
    (home / "config.toml").write_text(
        f"""\
model = "claude-x"
model_provider = "crab"
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[model_providers.crab]
name = "crabllm"
base_url = "{url}/v1"
env_key = "CRAB_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )


def codex_exec(codex: Path, url: str, tmp_path: Path, prompt: str) -> str:
    home, work = tmp_path / "codex-home", tmp_path / "work"
    _codex_home(home, url)
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "CRAB_KEY": KEY,
        **OFFLINE,
    }
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", prompt],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_codex_exec_is_answered_by_a_bridged_model(codex_bin, url, ant, tmp_path):
    out = codex_exec(codex_bin, url, tmp_path, "say hello")
    assert "echo:" in out and "say hello" in out
    sent = ant.requests[-1].json
    assert sent["model"] == "claude-x"
    assert sent["system"]  # Codex's instructions became the system prompt
    names = [t["name"] for t in sent["tools"]]
    assert "exec_command" in names
    # Codex's namespace tools reach the provider flattened.
    assert any("__" in name for name in names)


def test_codex_tool_call_round_trip(codex_bin, url, ant, tmp_path):
    call = fake_ant.tool_use("exec_command", {"cmd": "echo crab-ok"}, "toolu_codex1")
    ant.queue(
        fake_ant.Answer([call], stop_reason="tool_use"),
        fake_ant.text("The command ran."),
    )
    out = codex_exec(codex_bin, url, tmp_path, "run echo")
    assert "The command ran." in out
    turns = ant.requests[-1].json["messages"]
    uses = [b for t in turns if isinstance(t["content"], list) for b in t["content"]]
    results = [b for b in uses if b.get("type") == "tool_result"]
    assert [r["tool_use_id"] for r in results] == ["toolu_codex1"]


def test_agents_sdk_runs_an_agent_with_a_function_tool(url, ant, monkeypatch):
    agents = pytest.importorskip("agents")
    import openai

    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    calls: list[dict[str, Any]] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather of a city."""
        calls.append({"city": city})
        return f"sunny in {city}"

    ant.queue(
        fake_ant.Answer(
            [fake_ant.tool_use("get_weather", {"city": "Lyon"}, "toolu_ag1")],
            stop_reason="tool_use",
        ),
        fake_ant.text("It is sunny in Lyon."),
    )
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
    model = agents.OpenAIResponsesModel(model="claude-x", openai_client=client)
    agent = agents.Agent(
        name="weather", instructions="Answer briefly.", tools=[get_weather], model=model
    )
    agents.set_tracing_disabled(True)
    result = agents.Runner.run_sync(agent, "Weather in Lyon?")
    assert result.final_output == "It is sunny in Lyon."
    assert calls == [{"city": "Lyon"}]
    last = ant.requests[-1].json
    assert last["system"] == "Answer briefly."
    result_block = last["messages"][-1]["content"][0]
    assert result_block["type"] == "tool_result"
    assert json.dumps(result_block["content"]).find("sunny in Lyon") >= 0


def test_codex_keeps_anthropic_thinking_signed_across_a_tool_call(
    codex_bin, url, ant, tmp_path
):
    thinking = {"type": "thinking", "thinking": "I should run it.", "signature": "S1=="}
    call = fake_ant.tool_use("exec_command", {"cmd": "echo crab-ok"}, "toolu_codex2")
    ant.queue(
        fake_ant.Answer([thinking, call], stop_reason="tool_use"),
        fake_ant.text("Ran it."),
    )
    out = codex_exec(codex_bin, url, tmp_path, "run echo")
    assert "Ran it." in out
    turns = ant.requests[-1].json["messages"]
    assistant = next(t for t in turns if t["role"] == "assistant")
    assert assistant["content"][0] == thinking
