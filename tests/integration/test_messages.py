"""/v1/messages with the official anthropic SDK: openai-kind and anthropic-kind."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.recording import attach
from tests.upstream import Reply, Upstream

KEY = "sk-team-0123456789"
# Usage of every echoed answer of the Anthropic fake (cache read and write set).
USAGE = {"input_tokens": 12, "output_tokens": 6, "cache_write": 3, "cache_read": 20}


@pytest.fixture
def oai() -> Upstream:
    up = fake_oai.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def ant() -> Upstream:
    up = fake_ant.make_upstream(**USAGE).start()
    yield up
    up.stop()


@pytest.fixture
def gw(oai, ant, app_factory, served):
    """(gateway URL, recorder): gpt-4o on an openai fake, claude-x on anthropic's."""
    config = make_config(
        {
            "providers": {
                "oa": openai_provider(oai, ["gpt-4o"]),
                "an": anthropic_provider(ant, ["claude-x"]),
                "local": {"kind": "mock", "models": ["mock"]},
            },
            "aliases": {"claude-latest": "claude-x"},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    app = app_factory(config)
    recorder = attach(app)
    return served(app), recorder


def client(url: str, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("api_key", KEY)
    return anthropic.Anthropic(base_url=url, max_retries=0, **kw)


def raw_events(url: str, body: dict[str, Any], **headers: str) -> list[tuple[str, Any]]:
    """POST /v1/messages and parse the SSE answer into (event, data) pairs."""
    out: list[tuple[str, Any]] = []
    with httpx.stream(
        "POST",
        f"{url}/v1/messages",
        json=body,
        headers={"x-api-key": KEY, **headers},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                out.append((name, json.loads(line[len("data: ") :])))
                name = None
    return out


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- the fake is faithful ----------------------------------------------------


def test_anthropic_sdk_accepts_the_fake_directly(ant):
    sdk = anthropic.Anthropic(base_url=ant.url, api_key="sk-ant-upstream")
    msg = sdk.messages.create(model="claude-x", max_tokens=10, messages=user("hi"))
    assert msg.content[0].text == "echo: hi"
    assert msg.usage.cache_read_input_tokens == 20
    with sdk.messages.stream(
        model="claude-x", max_tokens=10, messages=user("a b")
    ) as stream:
        assert "".join(stream.text_stream) == "echo: a b"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 6 and final.stop_reason == "end_turn"


# -- translated: anthropic SDK -> gateway -> openai-kind provider -------------


def test_messages_to_openai_provider(gw, oai):
    url, recorder = gw
    msg = client(url).messages.create(
        model="gpt-4o",
        max_tokens=50,
        system="be brief",
        stop_sequences=["END"],
        extra_body={"temperature": 0.5},
        metadata={"user_id": "u-1"},
        messages=user("hello"),
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == "gpt-4o"
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello"
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (7, 3)
    sent = oai.requests[-1].json
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert sent["max_tokens"] == 50 and sent["stop"] == ["END"]
    assert sent["temperature"] == 0.5 and sent["user"] == "u-1"
    assert recorder.wait()["usage"]["prompt_tokens"] == 7


def test_stream_to_openai_provider_with_sdk_helper(gw):
    url, recorder = gw
    with client(url).messages.stream(
        model="gpt-4o", max_tokens=50, messages=user("one two three")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo:onetwothree"  # the openai fake streams words unspaced
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens == 7
    assert recorder.wait()["usage"]["completion_tokens"] == 4


def test_translated_stream_event_order(gw):
    url, _ = gw
    events = raw_events(
        url,
        {"model": "gpt-4o", "max_tokens": 9, "stream": True, "messages": user("a b")},
    )
    names = [n for n, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert start["role"] == "assistant" and start["content"] == []
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [d["delta"]["text"] for n, d in events if n == "content_block_delta"] == [
        "echo:",
        "a",
        "b",
    ]
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 3


def _tool_call_completion(args: str) -> dict[str, Any]:
    out = fake_oai.completion("gpt-4o", "", finish_reason="tool_calls")
    out["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": args},
            }
        ],
    }
    return out


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_tools_round_trip_through_openai_provider(gw, oai):
    url, _ = gw
    sdk = client(url)
    oai.enqueue(Reply(json=_tool_call_completion('{"city": "Paris"}')))
    first = sdk.messages.create(
        model="gpt-4o",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=user("weather in Paris?"),
    )
    assert first.stop_reason == "tool_use"
    (call,) = first.content
    assert call.type == "tool_use" and call.id == "call_abc"
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    sent = oai.requests[-1].json
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER_TOOL["input_schema"],
            },
        }
    ]
    assert sent["tool_choice"] == {
        "type": "function",
        "function": {"name": "get_weather"},
    }

    second = sdk.messages.create(
        model="gpt-4o",
        max_tokens=100,
        tools=[WEATHER_TOOL],
        messages=[
            *user("weather in Paris?"),
            {"role": "assistant", "content": [c.model_dump() for c in first.content]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_abc",
                        "content": "18C",
                    },
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
    )
    assert second.content[0].text == "echo: and tomorrow?"
    msgs = oai.requests[-1].json["messages"]
    assert msgs[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert msgs[2] == {"role": "tool", "tool_call_id": "call_abc", "content": "18C"}
    assert msgs[3] == {"role": "user", "content": "and tomorrow?"}


def test_tool_choice_any_and_parallel_flag(gw, oai):
    url, _ = gw
    client(url).messages.create(
        model="gpt-4o",
        max_tokens=10,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=user("x"),
    )
    sent = oai.requests[-1].json
    assert sent["tool_choice"] == "required"
    assert sent["parallel_tool_calls"] is False


def _tool_stream_events() -> list[Any]:
    base = {
        "id": "chatcmpl-t",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o",
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            **base,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    call = {
        "index": 0,
        "id": "call_s1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    return [
        chunk({"role": "assistant", "content": "Let me check."}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
        chunk(
            {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": "Oslo"}'}}]}
        ),
        chunk({}, "tool_calls"),
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16},
        },
        "[DONE]",
    ]


def test_streamed_tool_call_becomes_input_json_deltas(gw, oai):
    url, _ = gw
    oai.enqueue(Reply(events=_tool_stream_events()))
    with client(url).messages.stream(
        model="gpt-4o", max_tokens=100, tools=[WEATHER_TOOL], messages=user("Oslo?")
    ) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check."
    tool = final.content[1]
    assert (tool.id, tool.name, tool.input) == (
        "call_s1",
        "get_weather",
        {"city": "Oslo"},
    )
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (11, 5)

    oai.enqueue(Reply(events=_tool_stream_events()))
    events = raw_events(
        url,
        {
            "model": "gpt-4o",
            "max_tokens": 9,
            "stream": True,
            "tools": [WEATHER_TOOL],
            "messages": user("Oslo?"),
        },
    )
    blocks = [
        (d["index"], d["content_block"])
        for n, d in events
        if n == "content_block_start"
    ]
    assert blocks == [
        (0, {"type": "text", "text": ""}),
        (1, {"type": "tool_use", "id": "call_s1", "name": "get_weather", "input": {}}),
    ]
    json_deltas = [
        d["delta"]["partial_json"]
        for n, d in events
        if n == "content_block_delta" and d["delta"]["type"] == "input_json_delta"
    ]
    assert json_deltas == ['{"ci', 'ty": "Oslo"}']
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert stops == [0, 1]


def test_image_block_becomes_a_data_url(gw, oai):
    url, _ = gw
    client(url).messages.create(
        model="gpt-4o",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": "iVBORw0KGgo=",
                        },
                    },
                    {"type": "text", "text": "what is this?"},
                ],
            }
        ],
    )
    assert oai.requests[-1].json["messages"][-1]["content"] == [
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
        },
        {"type": "text", "text": "what is this?"},
    ]


def test_mock_provider_answers_through_messages(gw):
    url, _ = gw
    msg = client(url).messages.create(model="mock", max_tokens=20, messages=user("hi"))
    assert msg.content[0].text == "Mock reply: hi"


# -- native: anthropic SDK -> gateway -> anthropic-kind provider -------------


def test_native_pass_through_keeps_every_field(gw, ant):
    url, recorder = gw
    body = {
        "model": "claude-latest",
        "max_tokens": 64,
        "system": [
            {
                "type": "text",
                "text": "long system",
                "cache_control": {"type": "ephemeral"},
            }
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "hello there",
                        "cache_control": {"type": "ephemeral", "ttl": "1h"},
                    }
                ],
            }
        ],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "metadata": {"user_id": "u-9"},
        "brand_new_field": {"nested": [1, 2]},
    }
    resp = httpx.post(
        f"{url}/v1/messages",
        json=body,
        headers={
            "x-api-key": KEY,
            "anthropic-version": "2023-06-01",
            "anthropic-beta": "prompt-caching-2024-07-31",
        },
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == fake_ant.message(
        fake_ant.text("echo: hello there", **USAGE), "claude-x"
    )
    sent = ant.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.json == {**body, "model": "claude-x"}
    assert sent.headers["x-api-key"] == "sk-ant-upstream"
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    usage = recorder.wait()["usage"]
    assert usage["prompt_tokens"] == 12 + 20 + 3
    assert usage["prompt_tokens_details"] == {"cached_tokens": 20}
    assert usage["cache_creation_input_tokens"] == 3
    assert usage["completion_tokens"] == 6


def test_native_with_sdk(gw):
    url, _ = gw
    msg = client(url).messages.create(
        model="claude-x", max_tokens=10, messages=user("hi")
    )
    assert msg.content[0].text == "echo: hi"
    assert msg.id == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_native_stream_is_relayed_event_for_event(gw, ant):
    url, recorder = gw
    events = raw_events(
        url,
        {"model": "claude-x", "max_tokens": 9, "stream": True, "messages": user("a b")},
    )
    expected = fake_ant.events(fake_ant.text("echo: a b", **USAGE), "claude-x")
    assert [name for name, _ in expected].count("content_block_delta") == 3
    assert events == [(name, payload) for name, payload in expected]
    assert ant.requests[-1].json["stream"] is True
    usage = recorder.wait()["usage"]
    assert usage["prompt_tokens"] == 35 and usage["completion_tokens"] == 6

    with client(url).messages.stream(
        model="claude-x", max_tokens=9, messages=user("x y")
    ) as stream:
        assert "".join(stream.text_stream) == "echo: x y"


def test_native_stream_error_event_is_passed_on(gw, ant):
    url, recorder = gw
    events = fake_ant.events(fake_ant.text("a"), "claude-x")[:3]
    overloaded = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    ant.enqueue(Reply(events=[*events, ("error", overloaded)]))
    got = raw_events(
        url,
        {"model": "claude-x", "max_tokens": 9, "stream": True, "messages": user("a")},
    )
    assert got[-1] == ("error", overloaded)
    assert [n for n, _ in got[:-1]] == ["message_start", "ping", "content_block_start"]
    assert "error" in recorder.wait()


def test_count_tokens_native(gw, ant):
    url, _ = gw
    out = client(url).messages.count_tokens(model="claude-x", messages=user("one two"))
    assert out.input_tokens == 12
    assert ant.requests[-1].path == "/v1/messages/count_tokens"


def test_count_tokens_estimated_for_openai_kind(gw):
    """No provider to count: the gateway's estimate, 4 characters a token."""
    url, _ = gw
    out = client(url).messages.count_tokens(
        model="gpt-4o", system="x" * 20, messages=user("y" * 20)
    )
    assert out.input_tokens == 10


# -- auth and errors ---------------------------------------------------------


def test_auth_by_x_api_key_or_bearer(gw):
    url, _ = gw
    by_header = httpx.post(
        f"{url}/v1/messages",
        json={"model": "mock", "max_tokens": 5, "messages": user("a")},
        headers={"x-api-key": KEY},
        timeout=10,
    )
    assert by_header.status_code == 200 and by_header.json()["type"] == "message"
    by_bearer = anthropic.Anthropic(base_url=url, auth_token=KEY, max_retries=0)
    assert by_bearer.messages.create(
        model="mock", max_tokens=5, messages=user("a")
    ).content
    for sdk in (client(url, api_key="sk-wrong"),):
        with pytest.raises(anthropic.AuthenticationError) as exc:
            sdk.messages.create(model="mock", max_tokens=5, messages=user("a"))
        assert exc.value.body["type"] == "error"
        assert exc.value.body["error"]["type"] == "authentication_error"
    resp = httpx.post(
        f"{url}/v1/messages",
        json={"model": "mock", "max_tokens": 5, "messages": user("a")},
        timeout=10,
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"{not json", 400, "invalid_request_error"),
        (
            json.dumps({"model": "gpt-4o", "messages": user("x")}),
            400,
            "invalid_request_error",
        ),
        (
            json.dumps({"model": "gpt-4o", "max_tokens": 0, "messages": user("x")}),
            400,
            "invalid_request_error",
        ),
        (
            json.dumps(
                {
                    "model": "gpt-4o",
                    "max_tokens": 5,
                    "messages": [{"role": "system", "content": "x"}],
                }
            ),
            400,
            "invalid_request_error",
        ),
        (
            json.dumps({"model": "nope", "max_tokens": 5, "messages": user("x")}),
            404,
            "not_found_error",
        ),
    ],
)
def test_errors_have_anthropic_shape(gw, body, status, kind):
    url, _ = gw
    resp = httpx.post(
        f"{url}/v1/messages",
        content=body,
        headers={"x-api-key": KEY, "content-type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == status
    data = resp.json()
    assert set(data) == {"type", "error"} and data["type"] == "error"
    assert data["error"]["type"] == kind and data["error"]["message"]


def test_missing_max_tokens_names_the_field(gw):
    url, _ = gw
    resp = httpx.post(
        f"{url}/v1/messages",
        json={"model": "gpt-4o", "messages": user("x")},
        headers={"x-api-key": KEY},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "'max_tokens': is required"


def test_upstream_failure_is_anthropic_shaped(gw, ant, oai):
    url, _ = gw
    ant.enqueue(
        Reply(
            status=500,
            json={"type": "error", "error": {"type": "api_error", "message": "boom"}},
        )
    )
    with pytest.raises(anthropic.APIStatusError) as exc:
        client(url).messages.create(model="claude-x", max_tokens=5, messages=user("a"))
    assert exc.value.status_code == 502
    assert exc.value.body["error"]["type"] == "api_error"
    oai.enqueue(Reply(status=400, json={"error": {"message": "bad temperature"}}))
    with pytest.raises(anthropic.BadRequestError) as exc2:
        client(url).messages.create(model="gpt-4o", max_tokens=5, messages=user("a"))
    assert "bad temperature" in exc2.value.body["error"]["message"]


def test_failure_after_stream_started_is_one_error_event(gw, oai):
    url, _ = gw
    oai.enqueue(
        Reply(
            events=fake_oai.stream_events("gpt-4o", ["a", "b", "c", "d"]), drop_after=2
        )
    )
    events = raw_events(
        url, {"model": "gpt-4o", "max_tokens": 9, "stream": True, "messages": user("x")}
    )
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    assert names[-1] == "error" and names.count("error") == 1
    assert "message_stop" not in names
    assert events[-1][1]["type"] == "error"
    assert events[-1][1]["error"]["type"] == "api_error"


def test_server_tools_cannot_go_to_openai_provider(gw):
    url, _ = gw
    with pytest.raises(anthropic.BadRequestError) as exc:
        client(url).messages.create(
            model="gpt-4o",
            max_tokens=5,
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            messages=user("x"),
        )
    assert "server tool" in exc.value.body["error"]["message"]


def test_body_over_the_limit_is_an_anthropic_413(oai, app_factory, served):
    config = make_config(
        {"providers": {"oa": openai_provider(oai, ["gpt-4o"])}, "max_body_size": 2048}
    )
    url = served(app_factory(config))
    resp = httpx.post(
        f"{url}/v1/messages",
        json={"model": "gpt-4o", "max_tokens": 5, "messages": user("x" * 5000)},
        timeout=10,
    )
    assert resp.status_code == 413
    assert resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] == "request_too_large"
    assert not oai.requests


def test_native_calls_retry_and_fall_back(ant, app_factory, served):
    def provider(**over: Any) -> dict[str, Any]:
        return anthropic_provider(ant, ["claude-x"], api_key="k", **over)

    app = app_factory(
        make_config(
            {"providers": {"a1": provider(weight=1000), "a2": provider(weight=0.001)}}
        )
    )
    recorder = attach(app)
    url = served(app)
    ant.enqueue(
        Reply(
            status=529,
            json={
                "type": "error",
                "error": {"type": "overloaded_error", "message": "busy"},
            },
        )
    )
    msg = client(url).messages.create(
        model="claude-x", max_tokens=5, messages=user("a")
    )
    assert msg.content[0].text == "echo: a"
    assert len(ant.requests) == 2
    assert recorder.wait()["provider"] == "a2"

    # A stream whose first event is an error is retried the same way.
    overloaded = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "x"},
    }
    ant.enqueue(Reply(events=[("error", overloaded)]))
    with client(url).messages.stream(
        model="claude-x", max_tokens=5, messages=user("b")
    ) as stream:
        assert "".join(stream.text_stream) == "echo: b"
    assert len(ant.requests) == 4


@pytest.mark.parametrize("model", ["gpt-4o", "claude-x"])
def test_client_going_away_closes_the_upstream_stream(gw, oai, ant, model):
    url, _ = gw
    if model == "gpt-4o":
        events = fake_oai.stream_events("gpt-4o", ["w"] * 400)
        up = oai
    else:
        events = fake_ant.events(fake_ant.text(" ".join(["w"] * 400)), "claude-x")
        up = ant
    up.enqueue(Reply(events=events, chunk_delay=0.1))  # 40 s if never closed
    with httpx.stream(
        "POST",
        f"{url}/v1/messages",
        json={"model": model, "max_tokens": 9, "stream": True, "messages": user("a")},
        headers={"x-api-key": KEY},
        timeout=10,
    ) as resp:
        lines = resp.iter_lines()
        assert next(lines).startswith("event: message_start")
    # The gateway notices on its next write, closes its upstream response, and
    # the upstream's generator ends long before its 400 events are sent.
    assert up.streams_closed.wait(15), "upstream stream left open"


def test_mock_provider_streams_through_messages(gw):
    url, recorder = gw
    with client(url).messages.stream(
        model="mock", max_tokens=20, messages=user("one two")
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.replace(" ", "") == "Mockreply:onetwo"
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert recorder.wait()["usage"]["completion_tokens"] == final.usage.output_tokens
