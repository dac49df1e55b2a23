"""/v1beta (Google's Gemini API) with the official google-genai SDK, on every
provider kind: google (native pass-through), openai, anthropic and mock
(translated through the canonical chat format)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import anthropic_provider, make_config, openai_provider
from tests.fakes import bedrock as fake_bedrock
from tests.fakes import google as fake_google
from tests.recording import attach
from tests.scripted import TOOL_MARKER, AnthropicToolUpstream, OpenAIToolUpstream
from tests.upstream import Reply, Upstream

KEY = "sk-gem-0123456789"
GOOGLE, OPENAI, ANTHROPIC, MOCK = "gemini-2.5-flash", "gpt-x", "claude-x", "mock-x"
THINKING = "gemini-3-flash-preview"  # Google refuses its calls sent back unsigned
ALL = [GOOGLE, OPENAI, ANTHROPIC, MOCK]
TOOL_KINDS = [GOOGLE, OPENAI, ANTHROPIC]  # the mock model never calls a tool
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather in a city",
    parameters=types.Schema(
        type="OBJECT",
        properties={"city": types.Schema(type="STRING")},
        required=["city"],
    ),
)


@pytest.fixture
def gemini() -> Iterator[fake_google.GeminiFake]:
    fake = fake_google.make_fake()
    fake.upstream.route(
        r"/models/[^/]+:countTokens$", lambda rec: Reply(json={"totalTokens": 42})
    )
    fake.upstream.start()
    yield fake
    fake.upstream.stop()


@pytest.fixture
def oai() -> Iterator[Upstream]:
    up = OpenAIToolUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def ant() -> Iterator[Upstream]:
    up = AnthropicToolUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def gw(gemini, oai, ant, app_factory, served):
    """(gateway URL, recorder) with one model per provider kind."""
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{gemini.upstream.url}/v1beta",
                    "api_key": fake_google.API_KEY,
                    "models": [GOOGLE, THINKING, "text-embedding-004"],
                    "max_retries": 0,
                },
                "oa": openai_provider(oai, [OPENAI, "text-embedding-3-small"]),
                "an": anthropic_provider(ant, [ANTHROPIC]),
                "local": {"kind": "mock", "models": [MOCK]},
            },
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    app = app_factory(config)
    return served(app), attach(app)


@pytest.fixture
def client(gw) -> Iterator[genai.Client]:
    """The SDK at the gateway (kept referenced: a collected client closes)."""
    c = sdk(gw[0])
    yield c
    c.close()


def sdk(url: str, key: str = KEY) -> genai.Client:
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(base_url=url, api_version="v1beta"),
    )


@pytest.mark.parametrize("model", ALL)
def test_generate_content_on_every_kind(client, gw, model):
    url, recorder = gw
    out = client.models.generate_content(
        model=model,
        contents="hello there",
        config=types.GenerateContentConfig(
            system_instruction="be brief", max_output_tokens=50, temperature=0.2
        ),
    )
    assert "hello there" in out.text
    assert out.candidates[0].finish_reason == types.FinishReason.STOP
    assert out.usage_metadata.prompt_token_count > 0
    done = recorder.wait()
    assert done["endpoint"] == "gemini" and done["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("model", ALL)
def test_stream_generate_content_on_every_kind(client, gw, model):
    url, recorder = gw
    chunks = list(
        client.models.generate_content_stream(model=model, contents="one two three")
    )
    assert "one two three" in "".join(c.text or "" for c in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count > 0
    assert recorder.wait()["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("model", [*TOOL_KINDS, THINKING])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_function_calling_round_trip_on_every_kind(client, model, stream):
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    question = types.Content(
        role="user", parts=[types.Part(text=f"Paris {TOOL_MARKER}")]
    )

    def ask(contents: list[types.Content]) -> types.GenerateContentResponse:
        if not stream:
            return client.models.generate_content(
                model=model, contents=contents, config=config
            )
        chunks = list(
            client.models.generate_content_stream(
                model=model, contents=contents, config=config
            )
        )
        parts = [p for c in chunks for p in c.candidates[0].content.parts or []]
        last = chunks[-1]
        last.candidates[0].content.parts = parts
        return last

    first = ask([question])
    (call,) = first.function_calls
    assert call.name == "get_weather" and "Paris" in call.args["city"]
    answer = types.Part.from_function_response(
        name=call.name, response={"temperature": "21C"}
    )
    answer.function_response.id = call.id
    final = ask(
        [
            question,
            first.candidates[0].content,
            types.Content(role="user", parts=[answer]),
        ]
    )
    assert "Result" in final.text and "21C" in final.text


EMBEDDERS = [MOCK, "text-embedding-004", "text-embedding-3-small"]


@pytest.mark.parametrize("model", EMBEDDERS)
def test_embed_content_on_every_kind_that_embeds(client, gw, model):
    url, recorder = gw
    out = client.models.embed_content(model=model, contents=["a b", "c d e"])
    assert len(out.embeddings) == 2
    assert all(e.values for e in out.embeddings)
    assert recorder.wait()["endpoint"] == "embeddings"


def test_embed_on_anthropic_is_refused_in_google_shape(client, gw):
    url, _ = gw
    with pytest.raises(genai_errors.ClientError) as exc:
        client.models.embed_content(model=ANTHROPIC, contents=["a b"])
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"


@pytest.mark.parametrize("model", ALL)
def test_count_tokens_on_every_kind(client, gw, model):
    url, _ = gw
    out = client.models.count_tokens(model=model, contents="hello world " * 10)
    # Google counts itself (the fake says 42); elsewhere the gateway estimates.
    assert out.total_tokens == (42 if model == GOOGLE else 30)


def test_models_list_and_get(client):
    names = [m.name for m in client.models.list()]
    assert f"models/{GOOGLE}" in names and f"models/{MOCK}" in names
    assert client.models.get(model=OPENAI).name == f"models/{OPENAI}"


def test_unknown_model_is_404_in_google_shape(client, gw):
    url, _ = gw
    with pytest.raises(genai_errors.ClientError) as exc:
        client.models.get(model="nope")
    assert exc.value.code == 404 and exc.value.status == "NOT_FOUND"


def test_wrong_key_is_401_in_google_shape(gw):
    url, _ = gw
    wrong = sdk(url, key="sk-wrong")
    with pytest.raises(genai_errors.ClientError) as exc:
        wrong.models.generate_content(model=MOCK, contents="hi")
    assert exc.value.code == 401 and exc.value.status == "UNAUTHENTICATED"


def test_key_in_query_string_is_accepted_and_never_logged(gw, caplog):
    url, _ = gw
    caplog.set_level(logging.DEBUG)
    resp = httpx.post(
        f"{url}/v1beta/models/{MOCK}:generateContent?key={KEY}",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["candidates"][0]["content"]["parts"][0]["text"]
    ours = [r for r in caplog.records if r.name.startswith("crabllm_sync")]
    assert any(r.name == "crabllm_sync.extensions.logging" for r in ours)
    assert not [r for r in ours if KEY in r.getMessage()]


@pytest.mark.parametrize("model", [GOOGLE, OPENAI])
def test_stream_without_alt_sse_is_one_json_array(gw, model):
    url, _ = gw
    resp = httpx.post(
        f"{url}/v1beta/models/{model}:streamGenerateContent",
        json={"contents": [{"role": "user", "parts": [{"text": "a b"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    assert resp.status_code == 200 and resp.headers["content-type"].startswith(
        "application/json"
    )
    events = resp.json()
    assert isinstance(events, list) and events[-1]["candidates"][0]["finishReason"]
    assert "a b" in "".join(
        p.get("text", "")
        for e in events
        for c in e["candidates"]
        for p in c["content"]["parts"]
    )


def test_native_pass_through_keeps_what_only_google_reads(gw, gemini):
    """safetySettings reach Google unchanged; the request is not translated."""
    url, _ = gw
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    body = {
        "contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "safetySettings": settings,
    }
    resp = httpx.post(
        f"{url}/v1beta/models/{GOOGLE}:generateContent",
        json=body,
        headers={"x-goog-api-key": KEY},
    )
    assert resp.status_code == 200, resp.text
    sent = gemini.upstream.requests[-1]
    assert sent.json == body and sent.headers["x-goog-api-key"] == fake_google.API_KEY


def test_upstream_error_passes_in_google_shape(client, gw, gemini):
    url, _ = gw
    gemini.upstream.enqueue(fake_google.error(400, "bad thing", "INVALID_ARGUMENT"))
    with pytest.raises(genai_errors.ClientError) as exc:
        client.models.generate_content(model=GOOGLE, contents="hi")
    assert exc.value.status == "INVALID_ARGUMENT" and "bad thing" in exc.value.message


def test_key_rate_limit_applies_in_google_shape(gemini, app_factory, served):
    config = make_config(
        {
            "providers": {"local": {"kind": "mock", "models": [MOCK]}},
            "keys": [{"name": "slow", "key": KEY, "rate_limit": {"rpm": 1}}],
        }
    )
    client = sdk(served(app_factory(config)))
    client.models.generate_content(model=MOCK, contents="one")
    with pytest.raises(genai_errors.ClientError) as exc:
        client.models.generate_content(model=MOCK, contents="two")
    assert exc.value.code == 429 and exc.value.status == "RESOURCE_EXHAUSTED"


def test_native_stream_cut_before_the_finish_ends_with_an_error_event(gw, gemini):
    url, recorder = gw
    part = {"content": {"role": "model", "parts": [{"text": "half"}]}, "index": 0}
    gemini.upstream.enqueue(Reply(events=[{"candidates": [part]}]))
    resp = httpx.post(
        f"{url}/v1beta/models/{GOOGLE}:streamGenerateContent?alt=sse",
        json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": KEY},
    )
    events = [
        json.loads(line.removeprefix("data: "))
        for line in resp.text.splitlines()
        if line.startswith("data: ")
    ]
    assert events[0]["candidates"][0]["content"]["parts"][0]["text"] == "half"
    assert events[-1]["error"]["status"] == "UNAVAILABLE"
    assert "ended before the model finished" in events[-1]["error"]["message"]
    assert "error" in recorder.wait()


@pytest.fixture
def bedrock_client(app_factory, served, monkeypatch, tmp_path):
    """The SDK at a gateway whose model is on a Bedrock (Converse) fake."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-creds"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    up = fake_bedrock.make_upstream().start()
    config = make_config(
        {
            "providers": {
                "br": {
                    "kind": "bedrock",
                    "base_url": up.url,
                    "region": "us-east-1",
                    "access_key": "AKIDEXAMPLE",
                    "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                    "models": ["anthropic.claude-3-haiku-20240307-v1:0"],
                    "max_retries": 0,
                }
            },
            "aliases": {"bedrock-x": "anthropic.claude-3-haiku-20240307-v1:0"},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    client = sdk(served(app_factory(config)))
    yield client
    client.close()
    up.stop()


def test_generate_and_stream_on_bedrock(bedrock_client):
    out = bedrock_client.models.generate_content(model="bedrock-x", contents="hi there")
    assert "hi there" in out.text
    chunks = list(
        bedrock_client.models.generate_content_stream(model="bedrock-x", contents="a b")
    )
    assert "a b" in "".join(c.text or "" for c in chunks)
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def test_a_pause_in_a_stream_does_not_break_the_sdk(gemini, app_factory, served):
    """Keep-alive comments are not JSON and Google's SDKs read every line that
    is not `data:` as JSON: a Gemini stream gets none, however long a pause."""
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{gemini.upstream.url}/v1beta",
                    "api_key": fake_google.API_KEY,
                    "models": [GOOGLE],
                }
            },
            "routing": {"keepalive_seconds": 0.05},
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
        }
    )
    client = sdk(served(app_factory(config)))
    usage = {"promptTokenCount": 1, "candidatesTokenCount": 2, "totalTokenCount": 3}
    parts = [{"text": "slow answer"}]
    events = fake_google.stream_events(parts, usage, model=GOOGLE, response_id="r")
    gemini.upstream.enqueue(Reply(events=events, pauses={1: 0.5}))
    chunks = list(client.models.generate_content_stream(model=GOOGLE, contents="hi"))
    assert "".join(c.text or "" for c in chunks) == "slow answer"
