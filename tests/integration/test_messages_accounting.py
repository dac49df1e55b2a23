"""/v1/messages accounting: a native stream cut short is charged for the text
relayed, and count_tokens has the key's RPM but not the generation breaker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from crabllm_sync import pricing
from crabllm_sync.app import create_app
from tests.conftest import anthropic_provider, make_config
from tests.extensions_support import KEY_A, auth
from tests.fakes import anthropic as fake_ant
from tests.recording import attach
from tests.upstream import Reply

WORDS = 40
TEXT = " ".join(["abcdefghi"] * WORDS)  # 399 characters: about 100 tokens


def gateway(up, **over: Any):
    config = make_config(
        {
            "providers": {"an": anthropic_provider(up, ["claude-x"], timeout=60)},
            "routing": {"keepalive_seconds": 0.1},
            **over,
        }
    )
    app = create_app(config)
    app.testing = True
    return app


def test_a_native_stream_cut_before_message_delta_is_charged_for_the_relayed_text(
    anthropic_upstream, served
):
    events = fake_ant.events(fake_ant.text(TEXT), "claude-x")
    names = [name for name, _ in events]
    # The whole text is relayed, then the upstream pauses before message_delta.
    anthropic_upstream.enqueue(
        Reply(events=events, pauses={names.index("message_delta"): 60})
    )
    app = gateway(anthropic_upstream)
    recorder = attach(app)
    body = {
        "model": "claude-x",
        "max_tokens": 200,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    url = served(app) + "/v1/messages"
    with httpx.stream("POST", url, json=body, timeout=30) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line == "event: content_block_stop":
                break  # every delta is in; the client leaves
    usage = recorder.wait()["usage"]
    # message_start said 1 output token; the client was sent ~100.
    assert usage["completion_tokens"] == pricing.estimate_tokens(len(TEXT))


def count(client, key: str = KEY_A):
    body = {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}
    return client.post("/v1/messages/count_tokens", json=body, headers=auth(key))


def test_count_tokens_is_held_to_the_keys_requests_per_minute(anthropic_upstream):
    keys = [{"name": "a", "key": KEY_A, "rate_limit": {"requests_per_minute": 1}}]
    client = gateway(anthropic_upstream, keys=keys).test_client()
    assert count(client).status_code == 200
    refused = count(client)
    assert refused.status_code == 429
    assert refused.json["error"]["type"] == "rate_limit_error"
    assert anthropic_upstream.requests[-1].path.endswith("/count_tokens")
    assert len(anthropic_upstream.requests) == 1  # the refused one never left


@pytest.mark.parametrize("status", [500, 529])
def test_count_tokens_failures_do_not_open_the_generation_breaker(
    anthropic_upstream, status
):
    routing = {"keepalive_seconds": 0.1, "failure_threshold": 1}
    client = gateway(anthropic_upstream, routing=routing).test_client()
    anthropic_upstream.enqueue(fake_ant.error(status, "api_error", "boom"))
    assert count(client).status_code >= 500
    body = {
        "model": "claude-x",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = client.post("/v1/messages", json=body, headers=auth(KEY_A))
    assert resp.status_code == 200, resp.json
