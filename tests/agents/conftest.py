"""The coding agents' rig: the pinned agents (installed once), a gateway with
one model per provider kind behind scripted upstreams, and a clean run of an
agent (temporary HOME, no inherited credentials, bounded in time)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.agents.install import install
from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import google as fake_google
from tests.recording import Recorder, attach
from tests.scripted import (
    AnthropicToolUpstream,
    GoogleToolUpstream,
    OpenAIToolUpstream,
    ToolModel,
)

KEY = "sk-agent-0123456789"
# Models by the kind of provider that serves them.
NATIVE_GOOGLE, OPENAI, ANTHROPIC = "gemini-2.5-flash", "gpt-x", "claude-x"
MIN_NODE = 20  # Gemini CLI's and Qwen Code's engines
RUN_TIMEOUT = 180.0  # seconds for one agent run (its first start is the slowest)
SECRET = "crab-4242"  # in the workspace's notes.txt: only a tool can read it


@pytest.fixture(scope="session")
def agents_bin() -> Path:
    return installed_or_skip()


def installed_or_skip() -> Path:
    """The pinned agents' bin directory; the test skips, saying why, without
    npm or a recent enough node."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm and node are needed to install the coding agents")
    version = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=True
    ).stdout
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE:
        pytest.skip(f"the coding agents need node >= {MIN_NODE}; this is {version}")
    return install()


@dataclass
class Rig:
    url: str
    home: Path
    workspace: Path
    model: ToolModel
    bin: Path
    recorder: Recorder
    upstreams: dict[str, Any] = field(default_factory=dict)

    def refused(self) -> list[str]:
        """Every request the gateway answered with an error (an agent may
        retry past one quietly: none is expected)."""
        return [
            f"{d['endpoint']}: {d['error']}" for d in self.recorder.done if "error" in d
        ]

    @property
    def notes(self) -> Path:
        return self.workspace / "notes.txt"

    def run(
        self, args: list[str], env: dict[str, str], timeout: float = RUN_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        """The agent, non-interactive, with only the environment given here."""
        base = {
            "HOME": str(self.home),
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "NO_COLOR": "1",
            "TERM": "dumb",
            "LANG": "C.UTF-8",
        }
        cmd = [str(self.bin / args[0]), *args[1:]]
        return subprocess.run(
            cmd,
            env={**base, **env},
            cwd=self.workspace,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture
def rig(agents_bin, tmp_path, app_factory, served) -> Iterator[Rig]:
    model = ToolModel()
    ups = {
        "google": GoogleToolUpstream(model).start(),
        "openai": OpenAIToolUpstream(model).start(),
        "anthropic": AnthropicToolUpstream(model).start(),
    }
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{ups['google'].url}/v1beta",
                    "api_key": fake_google.API_KEY,
                    "models": [NATIVE_GOOGLE],
                    "max_retries": 0,
                },
                # A chat-completions-only server (vLLM and the like): the
                # kind takes no format natively, so Codex's Responses calls
                # are bridged onto chat, as for any such server.
                "oa": openai_provider(ups["openai"], [OPENAI], kind="vllm"),
                "an": anthropic_provider(ups["anthropic"], [ANTHROPIC]),
            },
            "keys": [{"name": "agents", "key": KEY, "models": ["*"]}],
        }
    )
    app = app_factory(config)
    recorder = attach(app)
    url = served(app)
    home, workspace = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    workspace.mkdir()
    (workspace / "notes.txt").write_text(f"The secret word is {SECRET}.\n")
    yield Rig(url, home, workspace, model, agents_bin, recorder, ups)
    for up in ups.values():
        up.stop()


def calls_to(name: str, args: Callable[[Rig], dict[str, Any]], rig: Rig) -> None:
    """Script the model to call tool `name` with `args(rig)` when asked to."""

    def plan(names: list[str]) -> tuple[str, dict[str, Any]]:
        assert name in names, f"the agent declared no tool '{name}': {names}"
        return name, args(rig)

    rig.model.plan = plan


def diagnose(proc: subprocess.CompletedProcess[str]) -> str:
    out, err = proc.stdout[-3000:], proc.stderr[-3000:]
    return f"exit {proc.returncode}\nstdout:\n{out}\nstderr:\n{err}"


def one_turn_done(rig: Rig, proc: subprocess.CompletedProcess[str]) -> None:
    """The agent answered "say hello" with the model's echo, nothing refused."""
    assert proc.returncode == 0, diagnose(proc)
    assert rig.refused() == []
    assert "echo:" in proc.stdout and "say hello" in proc.stdout, diagnose(proc)


def tool_task_done(rig: Rig, proc: subprocess.CompletedProcess[str]) -> None:
    """The model asked for the tool once, the agent ran it and sent the result
    back, and the final answer quotes the file: nothing refused."""
    assert proc.returncode == 0, diagnose(proc)
    assert rig.refused() == []
    assert rig.model.calls == 1
    assert SECRET in proc.stdout, diagnose(proc)
