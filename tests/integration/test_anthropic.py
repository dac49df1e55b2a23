"""The openai SDK through the gateway to a local Messages API (kind = anthropic)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.chat_stream import assemble, flatten
from tests.conftest import anthropic_provider, make_config, sdk_for_app, write_toml
from tests.fakes import anthropic as fake
from tests.sse import data_lines, streamed
from tests.upstream import Reply

MODEL = "claude-sonnet-4-5"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture
def up() -> Iterator[fake.AnthropicUpstream]:
    server = fake.make_upstream()
    server.start()
    yield server
    server.stop()


def _config(up: fake.AnthropicUpstream, **over: Any):
    return make_config(
        {"providers": {"claude": anthropic_provider(up, [MODEL], timeout=10, **over)}}
    )


@pytest.fixture
def client(up, app_factory) -> openai.OpenAI:
    return sdk_for_app(app_factory(_config(up)))


@pytest.fixture
def streaming_client(up, app_factory, served) -> openai.OpenAI:
    url = served(app_factory(_config(up)))
    return openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)


# -- plain chat ------------------------------------------------------------------


def test_chat_is_translated_and_sent_with_anthropic_headers(up, client):
    out = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
    )
    assert out.choices[0].message.content == "echo: hello"
    assert out.choices[0].finish_reason == "stop"
    assert (out.usage.prompt_tokens, out.usage.completion_tokens) == (25, 15)
    sent = up.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-upstream"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "hello"}],
    }


def test_stream_relays_text_and_the_usage_chunk_when_asked(up, streaming_client):
    up.queue(fake.text("Hello there, friend.", input_tokens=12, output_tokens=4))
    chunks = list(
        streaming_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    got = assemble(chunks)
    assert got["content"] == "Hello there, friend."
    assert got["finish_reason"] == "stop"
    assert chunks[-1].choices == []
    assert got["usage"]["prompt_tokens"] == 12
    assert got["usage"]["completion_tokens"] == 4
    assert up.requests[-1].json["stream"] is True


def test_stream_without_include_usage_has_no_usage_chunk(up, streaming_client):
    chunks = list(
        streaming_client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "a b"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert assemble(chunks)["content"] == "echo: a b"


def test_images_reach_anthropic_as_image_blocks(up, client):
    pixel = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/x8AAwMCAO+ip1"
        "sAAAAASUVORK5CYII="
    )
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{pixel}"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/ant.jpg"},
                    },
                ],
            }
        ],
    )
    blocks = up.requests[-1].json["messages"][0]["content"]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": pixel},
    }
    assert blocks[2] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/ant.jpg"},
    }


# -- tools -----------------------------------------------------------------------


def _call_weather(id_: str = "toolu_01A09q90qw90lq917835lq9", **kw: Any):
    return fake.Answer(
        [
            {"type": "text", "text": "Let me check."},
            fake.tool_use("get_weather", {"location": "San Francisco, CA"}, id_),
        ],
        stop_reason="tool_use",
        **kw,
    )


def test_tool_call_comes_back_in_openai_shape(up, client):
    up.queue(_call_weather())
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in SF?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01A09q90qw90lq917835lq9"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "San Francisco, CA"}
    sent = up.requests[-1].json
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert sent["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]


def test_agent_loop_runs_unchanged_and_reports_provider_usage(up, streaming_client):
    """Tools defined, the model calls one, the result goes back, answer streamed."""
    up.queue(
        _call_weather(input_tokens=300, output_tokens=40, cache_read=1000),
        fake.text(
            "It is 15 degrees in San Francisco.",
            input_tokens=350,
            output_tokens=12,
            cache_write=200,
        ),
    )
    client = streaming_client
    messages: list[Any] = [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": "What is the weather in San Francisco?"},
    ]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.usage.prompt_tokens == 1300
    assert first.usage.prompt_tokens_details.cached_tokens == 1000
    assert first.usage.completion_tokens == 40
    messages.append(first.choices[0].message)  # the SDK object, as agents do
    for call in first.choices[0].message.tool_calls:
        assert json.loads(call.function.arguments)["location"] == "San Francisco, CA"
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": "15 degrees"}
        )
    final = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    got = assemble(final)
    assert got["content"] == "It is 15 degrees in San Francisco."
    assert got["finish_reason"] == "stop"
    assert got["usage"]["prompt_tokens"] == 550
    assert got["usage"]["completion_tokens"] == 12
    assert got["usage"]["total_tokens"] == 562
    assert got["usage"]["cache_creation_input_tokens"] == 200
    second = up.requests[-1].json
    assert second["messages"][1]["content"][1]["type"] == "tool_use"
    assert second["messages"][2] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_01A09q90qw90lq917835lq9",
                "content": "15 degrees",
            }
        ],
    }


def test_thinking_signatures_survive_a_tool_round_trip(up, client):
    signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"
    thinking = {
        "type": "thinking",
        "thinking": "I need the tool.",
        "signature": signature,
    }
    call = _call_weather()
    up.queue(fake.Answer([thinking, *call.blocks], stop_reason="tool_use"))
    messages: list[Any] = [{"role": "user", "content": "Weather in SF?"}]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low"
    )
    msg = first.choices[0].message
    assert msg.model_extra["reasoning_content"] == "I need the tool."
    messages.append(msg)
    messages.append(
        {"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "15 C"}
    )
    client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL], reasoning_effort="low"
    )
    sent = up.requests[-1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["messages"][1]["content"][0] == thinking


def test_streamed_thinking_blocks_can_be_echoed_next_turn(up, streaming_client):
    signature = "WaUjzkypQ2mUEVM36O2TxuC06KN8xyfbJwyem2dw3URve"
    thinking = {"type": "thinking", "thinking": "Use the tool.", "signature": signature}
    up.queue(fake.Answer([thinking, *_call_weather().blocks], stop_reason="tool_use"))
    chunks = list(
        streaming_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "SF?"}],
            tools=[WEATHER_TOOL],
            reasoning_effort="low",
            stream=True,
        )
    )
    got = assemble(chunks)
    assert got["thinking_blocks"] == [thinking]
    call = got["tool_calls"][0]
    streaming_client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER_TOOL],
        reasoning_effort="low",
        messages=[
            {"role": "user", "content": "SF?"},
            {
                "role": "assistant",
                "content": got["content"],
                "thinking_blocks": got["thinking_blocks"],
                "tool_calls": [
                    {
                        "id": call["id"],
                        "type": "function",
                        "function": {
                            "name": call["name"],
                            "arguments": call["arguments"],
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call["id"], "content": "15 C"},
        ],
    )
    assert up.requests[-1].json["messages"][1]["content"][0] == thinking


@pytest.mark.parametrize(
    "answer",
    [
        fake.text("Just some words here.", input_tokens=9, output_tokens=5),
        fake.Answer(
            [
                {"type": "thinking", "thinking": "Two cities.", "signature": "c2ln"},
                {"type": "text", "text": "Checking both cities."},
                fake.tool_use("get_weather", {"location": "Paris"}, "toolu_1"),
                fake.tool_use("get_weather", {"location": "Zürich, 東京"}, "toolu_2"),
            ],
            stop_reason="tool_use",
            input_tokens=40,
            output_tokens=70,
            cache_read=500,
            cache_write=60,
        ),
        fake.text("Cut o", stop_reason="max_tokens", output_tokens=2),
    ],
    ids=["text", "tools", "length"],
)
def test_stream_equals_non_stream(up, streaming_client, answer):
    up.queue(answer, answer)
    args = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "go"}],
        "tools": [WEATHER_TOOL],
    }
    whole = flatten(streaming_client.chat.completions.create(**args))
    streamed = assemble(
        list(
            streaming_client.chat.completions.create(
                **args, stream=True, stream_options={"include_usage": True}
            )
        )
    )
    assert streamed == whole
    assert (
        whole["usage"]["total_tokens"]
        == (answer.input_tokens + answer.cache_read + answer.cache_write)
        + answer.output_tokens
    )


# -- errors ----------------------------------------------------------------------


def test_unsupported_parameter_is_400_and_never_reaches_anthropic(up, client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], n=2
        )
    assert exc.value.body["param"] == "n"
    assert exc.value.body["code"] == "unsupported_parameter"
    assert "claude" in exc.value.body["message"]
    assert up.requests == []


def test_provider_400_is_passed_on_with_its_message(up, client):
    # A history that opens with the assistant: the API itself refuses it.
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "assistant", "content": "Hi"}]
        )
    assert "first message must use the user role" in exc.value.body["message"]


def test_provider_auth_failure_is_502_naming_the_provider(up, client):
    up.enqueue(fake.error(401, "authentication_error", "invalid x-api-key"))
    with pytest.raises(openai.InternalServerError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "authentication with the provider failed" in exc.value.body["message"]
    assert "invalid x-api-key" in exc.value.body["message"]


def test_error_event_mid_stream_becomes_the_final_error_event(up, app_factory, served):
    up.queue(fake.text("partial answer here", error_after=5))
    url = served(app_factory(_config(up)))
    lines = data_lines(url, streamed(MODEL))
    assert "[DONE]" not in lines
    last = json.loads(lines[-1])
    assert last["error"]["message"] == "claude: Overloaded"
    assert json.loads(lines[1])["choices"][0]["delta"]["content"] == "partial"


def test_error_event_mid_stream_raises_in_the_openai_sdk(up, streaming_client):
    up.queue(fake.text("partial answer here", error_after=5))
    stream = streaming_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError, match="Overloaded"):
        for chunk in stream:
            seen.append(chunk)
    assert assemble(seen)["content"] == "partial answer"


def test_stream_cut_before_message_stop_ends_with_an_error(up, app_factory, served):
    answer = fake.text("never finished")
    up.enqueue(Reply(events=fake.events(answer, MODEL)[:5]))
    url = served(app_factory(_config(up)))
    lines = data_lines(url, streamed(MODEL))
    assert "message_stop" in json.loads(lines[-1])["error"]["message"]


def test_overloaded_before_any_content_is_retried(up, app_factory, served):
    # message_start and a ping, then overloaded: nothing reached the client yet.
    up.queue(fake.text("first try", error_after=2), fake.text("second try"))
    url = served(app_factory(_config(up, max_retries=1)))
    client = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    assert assemble(chunks)["content"] == "second try"
    assert len(up.requests) == 2


# -- the fake itself -------------------------------------------------------------


def test_fake_is_faithful_to_the_official_anthropic_sdk(up):
    sdk = anthropic.Anthropic(api_key="sk-ant-x", base_url=up.url, max_retries=0)
    tools = [
        {
            "name": "get_weather",
            "description": "Get the current weather in a given location",
            "input_schema": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        }
    ]
    answer = fake.Answer(
        [
            {"type": "thinking", "thinking": "Let me think.", "signature": "c2ln"},
            {"type": "text", "text": "Okay, let's check the weather."},
            fake.tool_use("get_weather", {"location": "San Francisco, CA"}, "toolu_9"),
        ],
        stop_reason="tool_use",
        input_tokens=472,
        output_tokens=89,
        cache_read=12,
    )
    up.queue(answer, answer)
    request = {
        "model": MODEL,
        "max_tokens": 1024,
        "tools": tools,
        "messages": [{"role": "user", "content": "Weather in SF?"}],
    }
    whole = sdk.messages.create(**request)
    with sdk.messages.stream(**request) as stream:
        texts = list(stream.text_stream)
        streamed = stream.get_final_message()
    assert "".join(texts) == "Okay, let's check the weather."
    assert streamed.model_dump() == whole.model_dump()
    assert whole.content[2].input == {"location": "San Francisco, CA"}
    assert whole.content[0].signature == "c2ln"
    assert whole.usage.cache_read_input_tokens == 12
    assert streamed.stop_reason == "tool_use"


def test_fake_refuses_like_the_api(up):
    sdk = anthropic.Anthropic(api_key="sk-ant-x", base_url=up.url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="roles must alternate"):
        sdk.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
            ],
        )
    with pytest.raises(anthropic.BadRequestError, match="tool_use_id"):
        sdk.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "nope", "content": "x"}
                    ],
                }
            ],
        )
    no_key = httpx.post(
        f"{up.url}/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 10, "messages": []},
        timeout=10,
    )
    assert no_key.status_code == 401
    assert no_key.json()["error"]["type"] == "authentication_error"


def test_provider_400_on_a_stream_request_is_raised_before_streaming(
    up, streaming_client
):
    with pytest.raises(openai.BadRequestError) as exc:
        streaming_client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "assistant", "content": "Hi"}],
            stream=True,
        )
    assert "first message must use the user role" in exc.value.body["message"]


def test_malformed_stream_event_fails_the_attempt(up, streaming_client):
    up.enqueue(Reply(events=[b"event: message_start\ndata: {not json\n\n"]))
    with pytest.raises(openai.InternalServerError) as exc:
        list(
            streaming_client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
            )
        )
    assert "malformed stream event" in exc.value.body["message"]


def test_overloaded_http_answer_is_retried(up, app_factory):
    up.enqueue(fake.error(529, "overloaded_error", "Overloaded"))
    client = sdk_for_app(app_factory(_config(up, max_retries=1)))
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "again"}]
    )
    assert out.choices[0].message.content == "echo: again"
    assert len(up.requests) == 2


def test_agent_loop_under_gunicorn_gevent(up, gunicorn, tmp_path):
    """The same translation with gevent's monkey-patched sockets, one worker."""
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[storage]
kind = "memory"

[providers.claude]
kind = "anthropic"
base_url = "{up.url}/v1"
api_key = "sk-ant-upstream"
models = ["{MODEL}"]
max_retries = 0
""",
    )
    server = gunicorn(config, workers=1)
    up.queue(
        _call_weather(input_tokens=30, output_tokens=8),
        fake.text("Sunny and 15 degrees.", input_tokens=45, output_tokens=6),
    )
    client = openai.OpenAI(api_key="x", base_url=f"{server.url}/v1", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Weather in SF?"}]
    first = client.chat.completions.create(
        model=MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    messages += [
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": "15 C, sunny"},
    ]
    got = assemble(
        list(
            client.chat.completions.create(
                model=MODEL,
                messages=messages,
                tools=[WEATHER_TOOL],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    )
    assert got["content"] == "Sunny and 15 degrees."
    assert (got["usage"]["prompt_tokens"], got["usage"]["completion_tokens"]) == (
        45,
        6,
    )
    assert up.requests[-1].json["messages"][2]["content"][0]["type"] == "tool_result"


def test_an_answer_of_the_wrong_shape_is_the_providers_502(up, client):
    """A field of the wrong type (content as a number) is the provider's
    fault: 502 naming it, not an internal error of the gateway."""
    up.enqueue(
        Reply(
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": 5,
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        )
    )
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "answered in a shape the gateway cannot read" in exc.value.message
