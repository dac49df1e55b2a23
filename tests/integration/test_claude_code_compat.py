"""What Claude Code sends, through the anthropic SDK: betas passed through on
the native path (anthropic-kind), translated rather than refused elsewhere."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.scripted import OpenAIToolUpstream
from tests.upstream import Recorded, Reply, Upstream

KEY = "sk-claude-0123456789"
BETA = "context-management-2025-06-27,tool-search-2025-10-19"
# Claude Code 2.1.x's first request: a system turn inside messages, and tools
# loaded on demand through Anthropic's tool search (beta features).
TOOLS: list[dict[str, Any]] = [
    {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
    {
        "name": "Bash",
        "description": "Run a shell command",
        "input_schema": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
        "defer_loading": True,
        "cache_control": {"type": "ephemeral"},
    },
]
MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    {"role": "system", "content": "The user's shell is bash."},
    {"role": "user", "content": "list files"},
]


def _message(rec: Recorded) -> Reply:
    return Reply(json=fake_ant.message(fake_ant.text("ok"), rec.json["model"]))


@pytest.fixture
def ant() -> Iterator[Upstream]:
    """The real API's acceptance of betas is not ours to judge: this one
    answers every request, and records what it was sent."""
    up = Upstream({fake_ant.MESSAGES_PATH: _message}).start()
    yield up
    up.stop()


@pytest.fixture
def oai() -> Iterator[Upstream]:
    up = OpenAIToolUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def client(ant, oai, app_factory, served) -> anthropic.Anthropic:
    config = make_config(
        {
            "providers": {
                "an": anthropic_provider(ant, ["claude-x"]),
                "oa": openai_provider(oai, ["gpt-x"]),
            },
            "aliases": {"claude-opus-5-5": "gpt-x"},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    url = served(app_factory(config))
    return anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)


def create(client: anthropic.Anthropic, model: str, **kw: Any) -> Any:
    return client.messages.create(
        model=model,
        max_tokens=100,
        messages=MESSAGES,
        tools=TOOLS,
        extra_headers={"anthropic-beta": BETA},
        **kw,
    )


def test_native_passes_system_turn_and_deferred_tools_through(client, ant):
    msg = create(client, "claude-x")
    assert msg.content[0].text == "echo: ok" or msg.content[0].text == "ok"
    sent = ant.requests[-1]
    assert sent.json["messages"] == MESSAGES and sent.json["tools"] == TOOLS
    assert sent.headers["anthropic-beta"] == BETA


def test_translated_keeps_the_system_turn_and_sends_every_tool(client, oai):
    msg = create(client, "gpt-x")
    assert msg.stop_reason == "end_turn" and "list files" in msg.content[0].text
    sent = oai.requests[-1].json
    assert [m["role"] for m in sent["messages"]] == ["user", "system", "user"]
    assert sent["messages"][1]["content"] == "The user's shell is bash."
    (tool,) = sent["tools"]
    assert (
        tool["function"]["name"] == "Bash" and "defer_loading" not in tool["function"]
    )


def test_claude_code_model_name_through_an_alias(client, oai):
    msg = create(client, "claude-opus-5-5")
    assert msg.model == "claude-opus-5-5"
    assert oai.requests[-1].json["model"] == "gpt-x"


def test_thinking_budget_becomes_reasoning_effort(client, oai):
    create(client, "gpt-x", thinking={"type": "enabled", "budget_tokens": 4000})
    assert oai.requests[-1].json["reasoning_effort"] == "medium"


def test_translated_stream_with_system_turn(client, oai):
    with client.messages.stream(
        model="gpt-x",
        max_tokens=100,
        messages=MESSAGES,
        tools=TOOLS,
        extra_headers={"anthropic-beta": BETA},
    ) as stream:
        text = "".join(stream.text_stream)
    assert "list files" in text
