"""/v1/responses with the official openai SDK: bridged models (mock, the
Anthropic fake, a chat-only OpenAI-compatible fake), tools, state."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.servers import wait_for
from tests.upstream import Upstream

KEY = "sk-team-0123456789"
OTHER = "sk-other-0123456789"
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

METRICS_TOKEN = "metrics-token-for-tests-0123"
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def ant() -> Upstream:
    up = fake_ant.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def chat_only() -> Upstream:
    up = fake_oai.make_upstream().start()
    yield up
    up.stop()


def _config(ant: Upstream, chat_only: Upstream, **over: Any) -> Any:
    custom = openai_provider(chat_only, ["local-llm"])
    custom["kind"] = "vllm"  # an OpenAI-compatible server speaking chat only
    return make_config(
        {
            "providers": {
                "an": anthropic_provider(ant, ["claude-x"]),
                "custom": custom,
                "local": {"kind": "mock", "models": ["mock"]},
            },
            "metrics_token": METRICS_TOKEN,
            "keys": [
                {"name": "team", "key": KEY, "models": ["*"]},
                {"name": "other", "key": OTHER, "models": ["*"]},
            ],
            **over,
        }
    )


@pytest.fixture
def url(ant, chat_only, app_factory, served) -> str:
    return served(app_factory(_config(ant, chat_only)))


def client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_mock_model_answers_a_string_input_as_a_response(url):
    resp = client(url).responses.create(model="mock", input="hello there")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.output_text == "Mock reply: hello there"
    assert resp.id.startswith("resp_")
    assert resp.usage.output_tokens == 4
    assert resp.usage.input_tokens > 0


def test_mock_model_streams_events_in_openai_order(url):
    with client(url).responses.stream(model="mock", input="hi you") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert final.output_text == "Mock reply: hi you"
    assert final.usage.total_tokens > 0


def test_anthropic_model_gets_instructions_as_system_and_answers(url, ant):
    resp = client(url).responses.create(
        model="claude-x", instructions="be brief", input="ping", max_output_tokens=64
    )
    assert resp.output_text == "echo: ping"
    sent = ant.requests[-1].json
    assert sent["system"] == "be brief"
    assert sent["max_tokens"] == 64
    assert resp.usage.input_tokens == 25 and resp.usage.output_tokens == 15


def test_anthropic_stream_is_the_same_answer(url):
    with client(url).responses.stream(model="claude-x", input="stream me") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: stream me"
    assert final.status == "completed"


def test_chat_only_custom_server_is_bridged_through_chat_completions(url, chat_only):
    resp = client(url).responses.create(model="local-llm", input="hi")
    assert resp.output_text == "echo: hi"
    assert chat_only.requests[-1].path.endswith("/chat/completions")
    with client(url).responses.stream(model="local-llm", input="a b") as stream:
        # the fake streams the words of its answer without the spaces
        assert stream.get_final_response().output_text == "echo:ab"


def test_function_call_round_trip_on_anthropic(url, ant):
    ant.queue(
        fake_ant.Answer(
            [fake_ant.tool_use("get_weather", {"city": "Paris"}, "toolu_1")],
            stop_reason="tool_use",
        ),
        fake_ant.text("It is sunny."),
    )
    c = client(url)
    first = c.responses.create(
        model="claude-x", input="weather in Paris?", tools=[TOOL]
    )
    call = first.output[-1]
    assert call.type == "function_call"
    assert (call.name, call.call_id) == ("get_weather", "toolu_1")
    assert json.loads(call.arguments) == {"city": "Paris"}
    second = c.responses.create(
        model="claude-x",
        previous_response_id=first.id,
        input=[
            {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}
        ],
        tools=[TOOL],
    )
    assert second.output_text == "It is sunny."
    turns = ant.requests[-1].json["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"][-1]["type"] == "tool_use"
    assert turns[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": "sunny",
    }


def test_streamed_function_call_has_argument_events(url, ant):
    ant.queue(
        fake_ant.Answer(
            [fake_ant.tool_use("get_weather", {"city": "Oslo"}, "toolu_2")],
            stop_reason="tool_use",
        )
    )
    with client(url).responses.stream(model="claude-x", input="w?", tools=[TOOL]) as s:
        kinds = [e.type for e in s]
        final = s.get_final_response()
    assert "response.function_call_arguments.delta" in kinds
    assert "response.function_call_arguments.done" in kinds
    assert final.output[-1].call_id == "toolu_2"
    assert json.loads(final.output[-1].arguments) == {"city": "Oslo"}


def test_hosted_web_search_is_left_out_visibly(url):
    raw = client(url).responses.with_raw_response.create(
        model="mock", input="x", tools=[{"type": "web_search"}]
    )
    assert raw.headers["x-crabllm-omitted"] == "tools.web_search"
    assert raw.parse().status == "completed"


def test_strict_config_refuses_what_a_bridged_model_cannot_do(
    ant, chat_only, app_factory, served
):
    url = served(app_factory(_config(ant, chat_only, responses={"strict": True})))
    with pytest.raises(openai.BadRequestError) as exc:
        client(url).responses.create(
            model="mock", input="x", tools=[{"type": "web_search"}]
        )
    assert exc.value.body["param"] == "tools.web_search"


def test_stored_response_is_retrieved_listed_and_deleted_by_its_key(url):
    c = client(url)
    resp = c.responses.create(model="mock", input="keep me")
    again = c.responses.retrieve(resp.id)
    assert again.output_text == resp.output_text
    items = c.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    assert items.data[0].content[0].text == "keep me"
    with pytest.raises(openai.NotFoundError):
        client(url, OTHER).responses.retrieve(resp.id)
    c.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(resp.id)


def test_previous_response_id_continues_the_conversation(url, ant):
    c = client(url)
    first = c.responses.create(model="claude-x", input="my name is Ada")
    c.responses.create(
        model="claude-x", previous_response_id=first.id, input="who am I?"
    )
    turns = ant.requests[-1].json["messages"]
    assert turns[0]["content"] in (
        "my name is Ada",
        [{"type": "text", "text": "my name is Ada"}],
    )
    assert turns[1]["role"] == "assistant"
    assert turns[-1]["content"] in (
        "who am I?",
        [{"type": "text", "text": "who am I?"}],
    )


def test_another_keys_previous_response_id_is_404(url):
    first = client(url).responses.create(model="mock", input="secret")
    with pytest.raises(openai.NotFoundError) as exc:
        client(url, OTHER).responses.create(
            model="mock", previous_response_id=first.id, input="x"
        )
    assert exc.value.body["param"] == "previous_response_id"


def test_store_false_stores_nothing(url):
    c = client(url)
    resp = c.responses.create(model="mock", input="forget me", store=False)
    assert resp.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(resp.id)


def test_streamed_response_is_stored(url):
    c = client(url)
    with c.responses.stream(model="mock", input="streamed") as stream:
        final = stream.get_final_response()
    assert c.responses.retrieve(final.id).output_text == final.output_text


def test_unknown_response_id_is_404_in_openai_shape(url):
    r = httpx.get(
        f"{url}/v1/responses/resp_nope", headers={"Authorization": f"Bearer {KEY}"}
    )
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_state_kept_in_the_sql_database_with_sqlite_storage(
    ant, chat_only, app_factory, served, tmp_path
):
    storage = {"kind": "sqlite", "path": str(tmp_path / "gw.db")}
    url = served(app_factory(_config(ant, chat_only, storage=storage)))
    c = client(url)
    first = c.responses.create(model="claude-x", input="remember 7")
    c.responses.create(model="claude-x", previous_response_id=first.id, input="what?")
    assert len(ant.requests[-1].json["messages"]) == 3
    assert c.responses.retrieve(first.id).output_text == "echo: remember 7"

    def written() -> bool:  # by the worker's batch writer, within flush_interval
        with sqlite3.connect(tmp_path / "gw.db") as conn:
            rows = conn.execute("SELECT id, key_name FROM responses").fetchall()
        return (first.id, "team") in rows

    wait_for(written, timeout=5, what="the stored response's batch write")


def test_omitted_feature_is_counted_on_metrics(url):
    client(url).responses.create(
        model="mock", input="x", tools=[{"type": "file_search", "vector_store_ids": []}]
    )
    text = httpx.get(f"{url}/metrics", headers=METRICS).text
    labels = 'endpoint="responses",feature="tools.file_search"'
    line = "crabllm_omitted_features_total{" + labels + "} 1.0"
    assert line in text


def test_text_format_the_provider_cannot_serve_is_a_400_naming_text_format(url):
    with pytest.raises(openai.BadRequestError) as exc:
        client(url).responses.create(
            model="claude-x", input="x", text={"format": {"type": "json_object"}}
        )
    assert exc.value.body["param"] == "text.format"
    assert "'text.format'" in exc.value.body["message"]


def test_json_schema_text_format_reaches_anthropic_as_structured_output(url, ant):
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    client(url).responses.create(
        model="claude-x",
        input="x",
        text={"format": {"type": "json_schema", "name": "out", "schema": schema}},
    )
    sent = ant.requests[-1].json
    assert sent["output_config"]["format"] == {"type": "json_schema", "schema": schema}


def test_reasoning_effort_becomes_an_anthropic_thinking_budget(url, ant):
    client(url).responses.create(
        model="claude-x",
        input="think",
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    )
    assert ant.requests[-1].json["thinking"] == {
        "type": "enabled",
        "budget_tokens": 2048,
    }


def test_anthropic_thinking_signature_round_trips_statelessly(url, ant):
    thinking = {"type": "thinking", "thinking": "let me see", "signature": "SIG=="}
    ant.queue(
        fake_ant.Answer(
            [thinking, fake_ant.tool_use("get_weather", {"city": "Rome"}, "toolu_9")],
            stop_reason="tool_use",
        ),
        fake_ant.text("done"),
    )
    c = client(url)
    first = c.responses.create(
        model="claude-x",
        input="w?",
        tools=[TOOL],
        store=False,
        include=["reasoning.encrypted_content"],
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    )
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    assert first.output[0].encrypted_content
    echoed = [i.model_dump(exclude_none=True) for i in first.output]
    c.responses.create(
        model="claude-x",
        input=[
            {"role": "user", "content": "w?"},
            *echoed,
            {"type": "function_call_output", "call_id": "toolu_9", "output": "warm"},
        ],
        tools=[TOOL],
        store=False,
        reasoning={"effort": "low"},
        max_output_tokens=4000,
    )
    turn = ant.requests[-1].json["messages"][1]
    assert turn["content"][0] == thinking
    assert turn["content"][1]["type"] == "tool_use"


def test_identical_non_stream_request_is_answered_from_the_cache(
    ant, chat_only, app_factory, served
):
    config = _config(ant, chat_only, extensions={"cache": {"ttl_seconds": 60}})
    url = served(app_factory(config))
    raws = [
        client(url).responses.with_raw_response.create(model="claude-x", input="same")
        for _ in range(2)
    ]
    assert len(ant.requests) == 1
    assert raws[1].headers.get("x-crabllm-cache") == "hit"
    first, second = (r.parse() for r in raws)
    assert second.output_text == first.output_text
    assert second.id != first.id


@pytest.fixture(scope="module")
def redis_url() -> Any:
    from tests.servers import RedisServer, Unavailable

    try:
        server = RedisServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server.url
    server.stop()


def test_state_kept_in_redis_with_redis_storage(
    ant, chat_only, app_factory, served, redis_url, tmp_path
):
    import redis

    storage = {
        "kind": "redis",
        "path": redis_url,
        "database": f"sqlite:///{tmp_path / 'keys.db'}",
    }
    url = served(app_factory(_config(ant, chat_only, storage=storage)))
    c = client(url)
    first = c.responses.create(model="mock", input="in redis")
    assert c.responses.retrieve(first.id).output_text == "Mock reply: in redis"
    with redis.Redis.from_url(redis_url) as r:
        ttl = r.ttl(f"responses:team:{first.id}")
    assert 0 < ttl <= 30 * 86400


def _events(url: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    with httpx.stream(
        "POST",
        f"{url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as r:
        assert r.status_code == 200
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                out.append((name, json.loads(line.removeprefix("data: "))))
    return out


def test_provider_failing_mid_stream_ends_with_response_failed(url, ant):
    ant.queue(fake_ant.text("one two three four", error_after=5))
    events = _events(url, {"model": "claude-x", "input": "x", "stream": True})
    name, last = events[-1]
    assert name == "response.failed"
    assert last["response"]["status"] == "failed"
    assert "Overloaded" in last["response"]["error"]["message"]
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == list(range(len(events)))


def test_max_tokens_stream_ends_with_response_incomplete(url, ant):
    ant.queue(fake_ant.text("cut short", stop_reason="max_tokens"))
    events = _events(url, {"model": "claude-x", "input": "x", "stream": True})
    name, last = events[-1]
    assert name == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


def test_usage_row_names_the_responses_endpoint(
    ant, chat_only, app_factory, served, tmp_path
):
    storage = {"kind": "sqlite", "path": str(tmp_path / "gw.db")}
    config = _config(ant, chat_only, storage=storage, extensions={"usage": {}})
    app = app_factory(config)
    url = served(app)
    client(url).responses.create(model="claude-x", input="count me")
    for ext in app.extensions["crabllm"].extensions:
        flush = getattr(ext, "flush", None)
        if flush is not None:
            flush()
    with sqlite3.connect(tmp_path / "gw.db") as conn:
        rows = conn.execute(
            "SELECT endpoint, model, input_tokens, output_tokens FROM usage"
        ).fetchall()
    assert ("responses", "claude-x", 25, 15) in rows


SEARCH_BLOCKS = [
    {
        "type": "server_tool_use",
        "id": "srvtoolu_1",
        "name": "web_search",
        "input": {"query": "crab news"},
    },
    {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {
                "type": "web_search_result",
                "url": "https://example.org/crabs",
                "title": "Crabs",
                "encrypted_content": "EC",
                "page_age": None,
            }
        ],
    },
    {"type": "text", "text": "Crabs are fine."},
]


def test_web_search_maps_to_anthropics_web_search_tool(url, ant):
    ant.queue(fake_ant.Answer(SEARCH_BLOCKS), fake_ant.Answer(SEARCH_BLOCKS))
    tool = {
        "type": "web_search",
        "user_location": {"type": "approximate", "city": "Brest", "country": "FR"},
    }
    raw = client(url).responses.with_raw_response.create(
        model="claude-x", input="crab news?", tools=[tool]
    )
    assert "x-crabllm-omitted" not in raw.headers
    assert raw.parse().output_text == "Crabs are fine."
    assert ant.requests[-1].json["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "user_location": {"type": "approximate", "city": "Brest", "country": "FR"},
        }
    ]
    with client(url).responses.stream(
        model="claude-x", input="crab news?", tools=[{"type": "web_search"}]
    ) as stream:
        assert stream.get_final_response().output_text == "Crabs are fine."


def test_web_search_on_a_provider_without_search_is_left_out(url, chat_only):
    raw = client(url).responses.with_raw_response.create(
        model="local-llm", input="x", tools=[{"type": "web_search"}]
    )
    assert raw.headers["x-crabllm-omitted"] == "tools.web_search"
    assert "web_search_options" not in chat_only.requests[-1].json


def test_custom_tool_round_trip_on_anthropic(url, ant):
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch."}
    ant.queue(
        fake_ant.Answer(
            [fake_ant.tool_use("apply_patch", {"input": "*** Begin Patch"}, "toolu_p")],
            stop_reason="tool_use",
        ),
        fake_ant.text("Patched."),
    )
    c = client(url)
    first = c.responses.create(model="claude-x", input="patch it", tools=[tool])
    call = first.output[-1]
    assert (call.type, call.input) == ("custom_tool_call", "*** Begin Patch")
    second = c.responses.create(
        model="claude-x",
        previous_response_id=first.id,
        input=[
            {"type": "custom_tool_call_output", "call_id": "toolu_p", "output": "ok"}
        ],
        tools=[tool],
    )
    assert second.output_text == "Patched."
    sent = ant.requests[-1].json
    assert sent["tools"][0]["input_schema"]["required"] == ["input"]
    assert sent["messages"][2]["content"][0]["tool_use_id"] == "toolu_p"


def test_a_failing_provider_falls_back_before_the_first_byte(
    ant, chat_only, app_factory, served
):
    from tests.upstream import Reply

    custom = openai_provider(chat_only, ["fb"])
    custom["kind"] = "vllm"
    config = make_config(
        {
            "providers": {
                "custom": custom,
                "local": {"kind": "mock", "models": ["fb"], "weight": 0},
            },
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    url = served(app_factory(config))
    down = Reply(status=500, json={"error": {"message": "down"}})
    chat_only.enqueue(down, down)
    assert client(url).responses.create(model="fb", input="x").output_text == (
        "Mock reply: x"
    )
    with client(url).responses.stream(model="fb", input="y") as stream:
        assert stream.get_final_response().output_text == "Mock reply: y"
    assert len(chat_only.requests) == 2
