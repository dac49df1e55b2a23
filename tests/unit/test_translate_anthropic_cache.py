"""cache_control on a chat message itself (as opencode's openai-compatible
provider sends it for Claude models) -> on that message's last block."""

from __future__ import annotations

from crabllm_sync.providers.anthropic import translate_request

EPHEMERAL = {"type": "ephemeral"}


def test_message_level_cache_control_lands_on_its_last_block():
    native = translate_request(
        {
            "model": "claude-x",
            "max_tokens": 10,
            "messages": [
                {"role": "system", "content": "rules", "cache_control": EPHEMERAL},
                {"role": "user", "content": "hi", "cache_control": EPHEMERAL},
            ],
        }
    )
    assert native["system"] == [
        {"type": "text", "text": "rules", "cache_control": EPHEMERAL}
    ]
    assert native["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi", "cache_control": EPHEMERAL}],
        }
    ]
