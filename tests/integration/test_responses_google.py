"""/v1/responses bridged to kind = "google" (the Gemini fake): thinking from
reasoning.effort, and Gemini 3's thought signatures kept across a stateless
(store: false) function-call round trip, streamed or not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import make_config
from tests.fakes import google as fake_google

MODEL = "gemini-2.5-flash"
GEMINI_3 = "gemini-3-flash-preview"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def gemini() -> Iterator[fake_google.GeminiFake]:
    fake = fake_google.make_fake()
    fake.upstream.start()
    yield fake
    fake.upstream.stop()


@pytest.fixture
def client(gemini, app_factory, served) -> openai.OpenAI:
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{gemini.upstream.url}/v1beta",
                    "api_key": fake_google.API_KEY,
                    "models": [MODEL, GEMINI_3],
                    "max_retries": 0,
                }
            }
        }
    )
    url = served(app_factory(config))
    return openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)


def test_reasoning_effort_turns_on_gemini_thinking_as_reasoning_items(client, gemini):
    resp = client.responses.create(model=MODEL, input="hi", reasoning={"effort": "low"})
    sent = gemini.upstream.requests[-1].json
    assert sent["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert resp.output[0].type == "reasoning"
    assert resp.output[0].content[0].text == "Let me think."
    assert resp.output_text == "echo: hi"
    assert resp.usage.output_tokens_details.reasoning_tokens == 5


def _follow_up(first_output: list[Any]) -> list[dict[str, Any]]:
    echoed = [item.model_dump(exclude_none=True) for item in first_output]
    call = next(i for i in echoed if i["type"] == "function_call")
    return [
        {"role": "user", "content": "Paris"},
        *echoed,
        {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
    ]


def test_gemini_3_signature_survives_a_stateless_round_trip(client, gemini):
    first = client.responses.create(
        model=GEMINI_3, input="Paris", tools=[TOOL], store=False
    )
    assert any(i.type == "function_call" for i in first.output)
    second = client.responses.create(
        model=GEMINI_3, input=_follow_up(first.output), tools=[TOOL], store=False
    )
    assert second.output_text.startswith("Result: get_weather=")


def test_gemini_3_signature_survives_a_streamed_stateless_round_trip(client, gemini):
    with client.responses.stream(
        model=GEMINI_3, input="Paris", tools=[TOOL], store=False
    ) as stream:
        first = stream.get_final_response()
    with client.responses.stream(
        model=GEMINI_3, input=_follow_up(first.output), tools=[TOOL], store=False
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text.startswith("Result: get_weather=")


def test_web_search_maps_to_google_search_grounding(client, gemini):
    raw = client.responses.with_raw_response.create(
        model=MODEL, input="news", tools=[{"type": "web_search"}]
    )
    assert "x-crabllm-omitted" not in raw.headers
    assert {"googleSearch": {}} in gemini.upstream.requests[-1].json["tools"]
