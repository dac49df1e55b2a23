"""The Responses fake (tests/fakes/openai_responses.py) speaks OpenAI's wire
format, as the openai SDK's own types define it."""

from __future__ import annotations

import json

from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from tests.fakes import openai_responses as fake

BODY = {"model": "gpt-4o", "input": "hello you", "metadata": {"a": "b"}}


def test_fake_response_is_an_sdk_response():
    resp = Response.model_validate(fake.response(BODY, "x1", "echo: hi", "completed"))
    assert resp.output_text == "echo: hi"
    assert resp.usage.output_tokens == 2


def test_fake_stream_is_sdk_events_in_order_with_names_and_sequence_numbers():
    adapter = TypeAdapter(ResponseStreamEvent)
    frames = fake.events(BODY, "x2", "echo: a b")
    parsed = []
    for frame in frames:
        name_line, data_line, *_ = frame.decode().split("\n")
        data = json.loads(data_line.removeprefix("data: "))
        assert name_line == f"event: {data['type']}"
        parsed.append(adapter.validate_python(data))
    assert [e.sequence_number for e in parsed] == list(range(len(parsed)))
    assert parsed[0].type == "response.created"
    assert parsed[-1].type == "response.completed"
    deltas = "".join(e.delta for e in parsed if e.type == "response.output_text.delta")
    assert deltas == "echo: a b" == parsed[-1].response.output_text
