"""/v1/responses passed through to openai and azure kinds (the Responses
fake), byte-faithful, with usage read from the answer and the stream."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import make_config, openai_provider
from tests.fakes import openai as fake_oai
from tests.fakes import openai_responses as fake

KEY = "sk-team-0123456789"

METRICS_TOKEN = "metrics-token-for-tests-0123"
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture
def ups() -> Any:
    made = [fake_oai.make_upstream().start() for _ in range(3)]
    yield made
    for up in made:
        up.stop()


@pytest.fixture
def url(ups, app_factory, served) -> str:
    oa, second, az = ups
    solo = openai_provider(second, ["solo", "gpt-4o"], weight=0)
    azure = {
        "kind": "azure",
        "base_url": az.url,
        "api_key": "az-upstream-key",
        "models": ["az-model"],
        "max_retries": 0,
    }
    config = make_config(
        {
            "providers": {
                "oa": openai_provider(oa, ["gpt-4o"]),
                "second": solo,
                "az": azure,
                "local": {"kind": "mock", "models": ["mock"]},
            },
            "metrics_token": METRICS_TOKEN,
            "aliases": {"fast": "gpt-4o"},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    return served(app_factory(config))


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)


def _post(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )


def test_openai_answer_passes_through_byte_for_byte_with_the_model_resolved(url, ups):
    oa = ups[0]
    r = _post(url, {"model": "fast", "input": "hi"})
    assert r.status_code == 200
    sent = oa.requests[-1]
    assert sent.path == "/v1/responses"
    assert sent.json == {"model": "gpt-4o", "input": "hi"}
    rid = r.json()["id"].removeprefix("resp_")
    expected = fake.response(sent.json, rid, "echo: hi", "completed")
    assert r.content == json.dumps(expected).encode()


def test_openai_stream_events_pass_through_as_they_came(url, ups):
    oa = ups[0]
    body = {"model": "gpt-4o", "input": "a b c", "stream": True}
    with httpx.stream(
        "POST",
        f"{url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as r:
        data = r.read()
    first = json.loads(data.split(b"\n")[1].removeprefix(b"data: "))
    rid = first["response"]["id"].removeprefix("resp_")
    assert data == b"".join(fake.events(oa.requests[-1].json, rid, "echo: a b c"))


def test_sdk_stream_on_native_model_gets_the_final_response(url):
    with client(url).responses.stream(model="gpt-4o", input="x y") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: x y"


def _tokens(url: str, model: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(
        httpx.get(f"{url}/metrics", headers=METRICS).text
    ):
        for s in family.samples:
            if s.name == "crabllm_tokens_total" and s.labels["model"] == model:
                out[s.labels["type"]] = s.value
    return out


def test_usage_is_read_from_the_answer_and_from_response_completed(url):
    c = client(url)
    c.responses.create(model="gpt-4o", input="one two")  # output: echo: one two
    with c.responses.stream(model="gpt-4o", input="three") as stream:
        stream.get_final_response()  # output: echo: three
    tokens = _tokens(url, "gpt-4o")
    assert tokens["output"] == 3 + 2
    assert tokens["cache_read"] == 2 * 2
    assert tokens["input"] == 2 * (fake.INPUT_TOKENS - 2)


def test_azure_goes_to_its_v1_responses_path_with_its_api_key(url, ups):
    az = ups[2]
    resp = client(url).responses.create(model="az-model", input="hey")
    assert resp.output_text == "echo: hey"
    sent = az.requests[-1]
    assert sent.path == "/openai/v1/responses"
    assert sent.headers["api-key"] == "az-upstream-key"
    assert sent.json["model"] == "az-model"


def test_follow_up_goes_to_the_provider_that_stored_its_predecessor(url, ups):
    oa, second, _ = ups
    c = client(url)
    first = c.responses.create(model="solo", input="remember")
    assert second.requests[-1].json["model"] == "solo"
    follow = c.responses.create(
        model="gpt-4o", previous_response_id=first.id, input="again"
    )
    assert follow.output_text == "echo: again"
    assert second.requests[-1].json["previous_response_id"] == first.id
    assert not [r for r in oa.requests if r.path.endswith("/responses")]


def test_native_follow_up_of_a_bridged_response_sends_the_conversation(url, ups):
    oa = ups[0]
    c = client(url)
    first = c.responses.create(model="mock", input="I am Ada")
    c.responses.create(model="gpt-4o", previous_response_id=first.id, input="who?")
    sent = oa.requests[-1].json
    assert "previous_response_id" not in sent
    roles = [item.get("role") for item in sent["input"]]
    assert roles == ["user", "assistant", "user"]
    assert sent["input"][-1]["content"] == "who?"
    answer = sent["input"][1]
    assert "id" not in answer and "status" not in answer
    assert answer["content"] == [
        {"type": "output_text", "text": "Mock reply: I am Ada", "annotations": []}
    ]


def test_native_response_is_stored_for_retrieve(url):
    c = client(url)
    resp = c.responses.create(model="gpt-4o", input="keep")
    assert c.responses.retrieve(resp.id).output_text == "echo: keep"
    assert c.responses.input_items.list(resp.id).data[0].content[0].text == "keep"


def test_chat_only_kind_is_not_native(ups, app_factory, served):
    custom = openai_provider(ups[0], ["local"])
    custom["kind"] = "lmstudio"
    url = served(
        app_factory(
            make_config(
                {
                    "providers": {"c": custom},
                    "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
                }
            )
        )
    )
    assert (
        client(url).responses.create(model="local", input="q").output_text == "echo: q"
    )
    assert ups[0].requests[-1].path == "/v1/chat/completions"


def _requests_total(url: str, status: str) -> float:
    for family in text_string_to_metric_families(
        httpx.get(f"{url}/metrics", headers=METRICS).text
    ):
        for s in family.samples:
            if (
                s.name == "crabllm_requests_total"
                and s.labels["endpoint"] == "responses"
                and s.labels["status"] == status
            ):
                return s.value
    return 0.0


def test_upstream_error_event_mid_stream_passes_on_and_fails_the_request(url, ups):
    from tests.upstream import Reply

    oa = ups[0]
    frames = fake.events({"model": "gpt-4o", "input": "x"}, "e1", "echo: x")[:3]
    error = {
        "type": "error",
        "code": "server_error",
        "message": "upstream broke sk-upstream",
        "param": None,
        "sequence_number": 3,
    }
    frames.append(f"event: error\ndata: {json.dumps(error)}\n\n".encode())
    oa.enqueue(Reply(events=frames))  # type: ignore[arg-type]
    with httpx.stream(
        "POST",
        f"{url}/v1/responses",
        json={"model": "gpt-4o", "input": "x", "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as r:
        data = r.read()
    assert data.startswith(b"".join(frames[:3]))
    last = data[len(b"".join(frames[:3])) :]
    assert last.startswith(b"event: error\n")
    assert b"sk-upstream" not in last  # the credential we sent is cut out
    assert _requests_total(url, "502") == 1


def test_native_stream_cut_before_response_completed_ends_with_an_error_event(url, ups):
    from tests.upstream import Reply

    oa = ups[0]
    frames = fake.events({"model": "gpt-4o", "input": "x"}, "c1", "echo: x")[:4]
    oa.enqueue(Reply(events=frames))  # type: ignore[arg-type]
    with httpx.stream(
        "POST",
        f"{url}/v1/responses",
        json={"model": "gpt-4o", "input": "x", "stream": True},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as r:
        data = r.read()
    tail = data[len(b"".join(frames)) :]
    name, payload = tail.split(b"\n")[:2]
    assert name == b"event: error"
    event = json.loads(payload.removeprefix(b"data: "))
    assert event["sequence_number"] == 4
    assert "ended before the response finished" in event["message"]
