"""pricing: usage normalisation, price lookup, exact integer costs."""

from __future__ import annotations

import pytest

from crabllm_sync import pricing
from crabllm_sync.config import PricingConfig, parse_config
from crabllm_sync.pricing import Price, Usage


def test_openai_usage_takes_cached_tokens_out_of_input():
    u = pricing.normalise(
        {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 256},
        }
    )
    assert u == Usage(input=86, cache_read=1920, output=300, reasoning=256)
    assert u.prompt_tokens == 2006 and u.total_tokens == 2306


def test_anthropic_adapter_usage_counts_cache_writes_once():
    # What providers/anthropic map_usage produces: prompt_tokens includes
    # uncached input, cache reads and cache writes.
    u = pricing.normalise(
        {
            "prompt_tokens": 10 + 200 + 3000,
            "completion_tokens": 50,
            "total_tokens": 3260,
            "prompt_tokens_details": {"cached_tokens": 200},
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 3000,
        }
    )
    assert u == Usage(input=10, cache_read=200, cache_write=3000, output=50)


def test_native_anthropic_usage_shape():
    u = pricing.normalise(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 200,
            "cache_creation_input_tokens": 3000,
            "output_tokens": 50,
        }
    )
    assert u == Usage(input=10, cache_read=200, cache_write=3000, output=50)


def test_responses_api_usage_shape():
    u = pricing.normalise(
        {
            "input_tokens": 100,
            "input_tokens_details": {"cached_tokens": 40},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 5},
        }
    )
    assert u == Usage(input=60, cache_read=40, output=20, reasoning=5)


@pytest.mark.parametrize("raw", [None, {}, "x", {"total_tokens": 5}])
def test_no_usage_is_none(raw):
    assert pricing.normalise(raw) is None


def test_garbage_counts_become_zero():
    u = pricing.normalise({"prompt_tokens": "lots", "completion_tokens": -3})
    assert u == Usage()


def test_embeddings_usage():
    assert pricing.normalise({"prompt_tokens": 8, "total_tokens": 8}) == Usage(input=8)


def test_cost_prices_each_kind_of_token_at_its_own_rate():
    price = Price(input=3.00, output=15.00, cache_read=0.30, cache_write=3.75)
    u = Usage(input=1_000_000, cache_read=1_000_000, cache_write=1_000_000, output=1)
    # 3.00 + 0.30 + 3.75 USD + 15 USD / 1e6
    assert (
        pricing.cost(u, price) == 3_000_000_000 + 300_000_000 + 3_750_000_000 + 15_000
    )


def test_cost_rounds_to_whole_nanos_half_up():
    # $1/M is 1000 nanos a token; $0.0001/M is 0.1 nanos a token.
    price = Price(input=0.0001)
    assert pricing.cost(Usage(input=5), price) == 1  # 0.5 -> 1
    assert pricing.cost(Usage(input=4), price) == 0  # 0.4 -> 0
    assert pricing.cost(Usage(input=1), Price(input=0.0375)) == 38  # 37.5
    assert pricing.cost(Usage(input=20), Price(input=2.5)) == 50_000


def test_cache_rates_default_to_the_input_rate():
    price = Price(input=2.0, output=8.0)
    assert pricing.cost(Usage(cache_read=10, cache_write=10), price) == 40_000


def test_reasoning_tokens_are_not_charged_twice():
    price = Price(input=1.0, output=10.0)
    with_reasoning = Usage(output=100, reasoning=80)
    assert pricing.cost(with_reasoning, price) == pricing.cost(Usage(output=100), price)


@pytest.mark.parametrize(
    "model,expected",
    [
        ("gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("gemini-2.5-flash", "gemini-2.5-flash"),
        ("gemini-2.5-flash-lite", "gemini-2.5-flash-lite"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "anthropic.claude-3-5-sonnet"),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic.claude-3-7-sonnet"),
        ("amazon.nova-pro-v1:0", "amazon.nova-pro-v1"),
        ("o1-pro-2025-03-19", "o1-pro"),
        ("o3-2025-04-16", "o3"),
    ],
)
def test_builtin_lookup_matches_ids_and_dated_versions(model, expected):
    assert pricing.lookup(model) == pricing.BUILTIN[expected]


@pytest.mark.parametrize(
    "model", ["mock", "gpt-4ox", "my-local-llama", "o1x", "gpt-4.7-new"]
)
def test_unknown_models_cost_nothing(model):
    assert pricing.lookup(model) == pricing.ZERO_PRICE


def test_unknown_models_are_unpriced_but_free_ones_are_priced():
    config = parse_config(
        {
            "providers": {
                "az": {
                    "kind": "azure",
                    "base_url": "https://x.openai.azure.com",
                    "models": ["my-deployment", "gpt-4o", "free-here", "*"],
                },
                "m": {"kind": "mock", "models": ["mock"]},
            },
            "pricing": {"free-here": {}},
        },
        {},
    )
    assert pricing.find("my-deployment", config.pricing) is None
    assert not pricing.is_priced("my-deployment", config)
    assert pricing.is_priced("free-here", config)  # priced at 0 on purpose
    assert pricing.is_priced("mock", config)  # the mock provider bills nothing
    assert pricing.unpriced_models(config) == ["my-deployment"]


@pytest.mark.parametrize(
    ("model", "usage", "nanos"),
    [
        ("whisper-1", Usage(audio_ms=60_000), 6_000_000),  # $0.006 a minute
        ("tts-1", Usage(characters=1_000_000), 15_000_000_000),
        ("dall-e-3", Usage(images=2), 80_000_000),
    ],
)
def test_openai_media_models_have_builtin_prices(model, usage, nanos):
    assert pricing.cost(usage, pricing.lookup(model)) == nanos


def test_config_pricing_overrides_the_table():
    over = {
        "gpt-4o": PricingConfig(
            prompt_cost_per_million=1.0,
            completion_cost_per_million=2.0,
            cache_read_cost_per_million=0.5,
        )
    }
    assert pricing.lookup("gpt-4o", over) == Price(1.0, 2.0, 0.5, None)
    assert pricing.lookup("gpt-4o-mini", over) == pricing.BUILTIN["gpt-4o-mini"]


def test_every_builtin_price_is_sane():
    for name, p in pricing.BUILTIN.items():
        assert p.input >= 0 and p.output >= 0, name
        if p.cache_read is not None:
            assert p.cache_read <= p.input, name


def test_estimate_from_text_length():
    body = {"messages": [{"role": "user", "content": "x" * 40}], "model": "m"}
    u = pricing.estimate(body, output_chars=9)
    assert u == Usage(input=10, output=3, estimated=True)
    parts = {"messages": [{"content": [{"type": "text", "text": "abcd"}]}]}
    assert pricing.request_chars(parts) == 4
    assert pricing.request_chars({"input": ["ab", "cd"]}) == 4
    assert pricing.request_chars({"input": [[1, 2, 3]]}) == 12


def test_chunk_and_response_chars():
    chunk = {"choices": [{"delta": {"content": "hello"}}]}
    assert pricing.chunk_chars(chunk) == 5
    assert pricing.chunk_chars({"choices": []}) == 0
    resp = {"choices": [{"message": {"content": "abc"}}, {"message": {}}]}
    assert pricing.response_chars(resp) == 3


# -- media units ---------------------------------------------------------------


def test_media_usage_is_read_alongside_tokens():
    assert pricing.normalise({"images": 3}) == Usage(images=3)
    assert pricing.normalise({"characters": 11}) == Usage(characters=11)
    assert pricing.normalise({"seconds": 1.2345}) == Usage(audio_ms=1234)
    assert pricing.normalise({"seconds": "x"}) == Usage()
    assert pricing.normalise({"seconds": float("nan")}) == Usage()
    assert pricing.normalise(
        {"images": 1, "prompt_tokens": 5, "completion_tokens": 7}
    ) == Usage(input=5, output=7, images=1)


def test_media_cost_is_exact_nanos():
    price = Price(per_image=0.04, per_million_characters=15.0, per_second=0.006 / 60)
    assert pricing.cost(Usage(images=3), price) == 120_000_000
    assert pricing.cost(Usage(characters=1), price) == 15_000  # $15 per million
    # $0.006 a minute: 61.5 s is $0.00615.
    assert pricing.cost(Usage(audio_ms=61_500), price) == 6_150_000
    assert pricing.cost(Usage(images=1, characters=1, audio_ms=1), price) == (
        40_000_000 + 15_000 + 100
    )


@pytest.mark.parametrize("junk", [5, True, "text", {"role": "user"}, None, 1.5])
def test_character_counts_skip_fields_of_the_wrong_shape(junk):
    """These run on bodies validated later or never (a speech request's stray
    `messages`, a provider's malformed `choices`): wrong shapes count zero
    instead of raising (the hostile-input fuzz found a 500 here)."""
    assert pricing.request_chars({"messages": junk, "input": "abcd"}) == 4
    assert pricing.response_chars({"choices": junk}) == 0
    assert pricing.chunk_chars({"choices": junk}) == 0
