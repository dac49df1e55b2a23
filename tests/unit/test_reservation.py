"""What a request reserves before it is sent: its own caps, `n`, model maxima."""

from __future__ import annotations

from crabllm_sync.config import parse_config
from crabllm_sync.pricing import Price, Usage, cost
from crabllm_sync.reservation import max_output_tokens, requested_usage

PRICE = Price(input=1.0, output=10.0)  # 1000 and 10000 nanos per token


def chat(**over):
    return {"messages": [{"role": "user", "content": "x" * 8}], **over}


def test_reservation_uses_the_requests_output_cap():
    assert requested_usage(chat(max_tokens=5), "chat", 4096) == Usage(
        input=2, output=5, estimated=True
    )
    assert requested_usage(chat(max_completion_tokens=1), "chat", 4096).output == 1
    assert cost(requested_usage(chat(max_tokens=5), "chat", 4096), PRICE) == 52_000


def test_reservation_multiplies_the_output_by_n():
    assert requested_usage(chat(max_tokens=5, n=4), "chat", 4096).output == 20
    assert requested_usage(chat(n=3), "chat", 1000).output == 3000


def test_reservation_without_max_tokens_is_the_models_output_maximum():
    assert requested_usage(chat(), "chat", 16_384).output == 16_384


def test_model_output_maximum_from_config_then_table_then_default():
    config = parse_config(
        {
            "pricing": {"mine": {"max_output_tokens": 777}},
            "extensions": {"budget": {"default_max_output_tokens": 999}},
        },
        {},
    )
    assert max_output_tokens("mine", config) == 777
    assert max_output_tokens("gpt-4o-2024-08-06", config) == 16_384
    assert max_output_tokens("gpt-4o-mini", config) == 16_384
    assert max_output_tokens("claude-sonnet-4-5", config) == 4096
    assert max_output_tokens("my-azure-deployment", config) == 999
    assert max_output_tokens("my-azure-deployment", parse_config({}, {})) == 4096


def test_embeddings_reserve_input_only_and_media_their_units():
    assert requested_usage({"input": "abcd"}, "embeddings", 4096) == Usage(
        input=1, estimated=True
    )
    assert requested_usage({"prompt": "a cat", "n": 3}, "images", 4096).images == 3
    assert requested_usage({"input": "hello"}, "speech", 4096).characters == 5
    assert requested_usage({}, "transcription", 4096) == Usage(estimated=True)


def test_a_huge_n_reserves_at_most_openais_bound():
    usage = requested_usage(chat(max_tokens=2**31 - 1, n=2**40), "chat", 4096)
    assert usage.output == 128 * (2**31 - 1)
    assert cost(usage, Price(input=600.0, output=600.0)) < 2**63


def test_reservation_of_a_native_responses_body_counts_its_items_and_cap():
    body = {
        "instructions": "x" * 4,
        "input": [
            {"role": "user", "content": "x" * 8},
            {"role": "user", "content": [{"type": "input_text", "text": "x" * 4}]},
        ],
        "max_output_tokens": 5,
    }
    # 16 characters of input text = 4 tokens; the body's own output cap.
    usage = requested_usage(body, "responses", 4096)
    assert (usage.input, usage.output) == (4, 5)
    assert cost(usage, PRICE) == 4 * 1000 + 5 * 10_000
