"""/v1/responses bridged to kind = "bedrock" (the Converse fake): text,
reasoning with its signature, streamed and not."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import make_config
from tests.fakes import bedrock as fake
from tests.integration.test_bedrock import (  # noqa: F401 - fixtures reused
    MODEL,
    bedrock_up,
    fixture,
    no_real_aws,
    provider,
)


@pytest.fixture
def client(bedrock_up, app_factory, served) -> openai.OpenAI:  # noqa: F811
    url = served(app_factory(make_config({"providers": {"bed": provider(bedrock_up)}})))
    return openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)


def test_bedrock_model_answers_a_response(client, bedrock_up):  # noqa: F811
    bedrock_up.enqueue(fake.converse_reply(fake.response([{"text": "Hello there"}])))
    resp = client.responses.create(model=MODEL, input="hi", instructions="short")
    assert resp.output_text == "Hello there"
    sent = bedrock_up.requests[-1].json
    assert sent["system"] == [{"text": "short"}]
    assert resp.usage.input_tokens == 12 and resp.usage.output_tokens == 5


def test_bedrock_reasoning_streams_as_a_reasoning_item_with_its_signature(
    client,
    bedrock_up,  # noqa: F811
):
    answer = fixture("reasoning", "response.json")
    bedrock_up.enqueue(fake.stream_reply(fake.events_for(answer)))
    with client.responses.stream(model=MODEL, input="think") as stream:
        final = stream.get_final_response()
    reasoning = [i for i in final.output if i.type == "reasoning"]
    assert reasoning and reasoning[0].encrypted_content
    assert final.output_text


def test_bedrock_reasoning_signature_round_trips_statelessly(client, bedrock_up):  # noqa: F811
    answer = fixture("reasoning", "response.json")
    bedrock_up.enqueue(fake.converse_reply(answer))
    first = client.responses.create(model=MODEL, input="think", store=False)
    echoed = [i.model_dump(exclude_none=True) for i in first.output]
    bedrock_up.enqueue(fake.converse_reply(fake.response([{"text": "ok"}])))
    client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "think"},
            *echoed,
            {"role": "user", "content": "more"},
        ],
        store=False,
    )
    sent = bedrock_up.requests[-1].json["messages"][1]["content"]
    native = [
        b for b in answer["output"]["message"]["content"] if "reasoningContent" in b
    ]
    assert [b for b in sent if "reasoningContent" in b] == native
