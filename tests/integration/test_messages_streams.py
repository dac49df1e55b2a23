"""/v1/messages streams are paced like chat streams: keep-alive comments during an
upstream pause, and a client that leaves closes the upstream at once, on both
the native (anthropic-kind) and the translated (openai-kind) path.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from crabllm_sync.app import create_app
from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.upstream import Reply, Upstream


def gateway(
    upstream: Upstream,
    anthropic_upstream: Upstream,
    keepalive: float,
    timeout: float = 5,
):
    config = make_config(
        {
            "providers": {
                "oa": openai_provider(upstream, ["gpt-4o"], timeout=timeout),
                "an": anthropic_provider(
                    anthropic_upstream, ["claude-x"], timeout=timeout
                ),
            },
            "routing": {"keepalive_seconds": keepalive},
        }
    )
    app = create_app(config)
    app.testing = True
    return app


def script(model: str, up: Upstream, pause: float) -> None:
    """Queue a three-word answer on `up` with a pause between w0 and w1."""
    if model == "claude-x":
        events: list[Any] = fake_ant.events(fake_ant.text("w0 w1 w2"), model)
        # message_start, ping, content_block_start, w0, [pause] w1, ...
        before_w1 = 4
    else:
        events = fake_oai.stream_events(model, ["w0", "w1", "w2"])
        before_w1 = 2  # role chunk, w0, [pause] w1, ...
    up.enqueue(Reply(events=events, pauses={before_w1: pause}))


def read(base: str, model: str, stop_after: int | None = None) -> list[str]:
    """The lines of a streamed /v1/messages answer: 'comment', 'event:<name>'.

    With `stop_after`, hang up after that many named events.
    """
    seen: list[str] = []
    body = {
        "model": model,
        "max_tokens": 20,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream("POST", f"{base}/v1/messages", json=body, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        for line in resp.iter_lines():
            if line.startswith(":"):
                seen.append("comment")
            elif line.startswith("event: "):
                seen.append("event:" + line[len("event: ") :])
                named = sum(1 for s in seen if s.startswith("event:"))
                if stop_after is not None and named >= stop_after:
                    break
            elif line.startswith("data: "):
                json.loads(line[len("data: ") :])  # every data line is JSON
    return seen


@pytest.mark.parametrize("model", ["claude-x", "gpt-4o"])
def test_keepalive_comments_fill_an_upstream_pause(
    upstream, anthropic_upstream, served, model
):
    up = anthropic_upstream if model == "claude-x" else upstream
    script(model, up, 1.5)
    base = served(gateway(upstream, anthropic_upstream, keepalive=0.2))
    seen = read(base, model)
    assert seen[-1] == "event:message_stop"
    comments = seen.count("comment")
    assert comments >= 3, seen
    first = seen.index("comment")
    assert first > 0 and seen[0] == "event:message_start"
    # The comments are all together, in the pause, and the stream goes on after.
    assert set(seen[first : first + comments]) == {"comment"}
    assert "event:content_block_delta" in seen[first + comments :]


@pytest.mark.parametrize("model", ["claude-x", "gpt-4o"])
def test_anthropic_sdk_reads_a_stream_with_keepalives(
    upstream, anthropic_upstream, served, model
):
    up = anthropic_upstream if model == "claude-x" else upstream
    script(model, up, 1.0)
    base = served(gateway(upstream, anthropic_upstream, keepalive=0.2))
    sdk = anthropic.Anthropic(base_url=base, api_key="none", max_retries=0)
    with sdk.messages.stream(
        model=model, max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text.replace(" ", "") == "w0w1w2"


@pytest.mark.parametrize("model", ["claude-x", "gpt-4o"])
def test_a_client_leaving_during_a_pause_closes_the_upstream(
    upstream, anthropic_upstream, served, model
):
    up = anthropic_upstream if model == "claude-x" else upstream
    script(model, up, 60.0)
    # Without the abort the gateway would sit in a 60 s read of the upstream.
    base = served(gateway(upstream, anthropic_upstream, keepalive=0.1, timeout=60))
    seen = read(base, model, stop_after=2)
    assert seen[:1] == ["event:message_start"]
    assert up.streams_closed.wait(10), "upstream stream left open"
    assert up.streams_open == 0
