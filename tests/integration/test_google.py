"""kind = "google": the openai SDK through the gateway to a local fake Gemini."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from google import genai
from google.genai import types

from tests.chat_stream import assemble, flatten
from tests.conftest import make_config
from tests.fakes import google as fake_google
from tests.upstream import Reply

MODEL = "gemini-2.5-flash"
THINKING_MODEL = "gemini-3-flash-preview"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f", None]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
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
                    "models": [MODEL, THINKING_MODEL, "text-embedding-004"],
                    "max_retries": 0,
                    "timeout": 10,
                }
            }
        }
    )
    url = served(app_factory(config))
    return openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)


# -- the fake is Gemini, as far as Google's own SDK can tell ------------------


def test_google_sdk_accepts_the_fake(gemini):
    sdk = genai.Client(
        api_key=fake_google.API_KEY,
        http_options=types.HttpOptions(
            base_url=gemini.upstream.url, api_version="v1beta"
        ),
    )
    out = sdk.models.generate_content(
        model=MODEL,
        contents="hello there",
        config=types.GenerateContentConfig(
            system_instruction="be brief", temperature=0.2, max_output_tokens=50
        ),
    )
    assert out.text == "echo: hello there"
    assert (
        out.usage_metadata.total_token_count
        == out.usage_metadata.prompt_token_count + 3
    )
    assert out.candidates[0].finish_reason == types.FinishReason.STOP
    sent = gemini.upstream.requests[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == fake_google.API_KEY

    pieces = list(sdk.models.generate_content_stream(model=MODEL, contents="one two"))
    assert "".join(p.text or "" for p in pieces) == "echo: one two"
    assert pieces[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert gemini.upstream.requests[-1].query == {"alt": "sse"}


def test_google_sdk_function_call_round_trip_on_the_fake(gemini):
    sdk = genai.Client(
        api_key=fake_google.API_KEY,
        http_options=types.HttpOptions(
            base_url=gemini.upstream.url, api_version="v1beta"
        ),
    )
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(
                    type="OBJECT",
                    properties={"city": types.Schema(type="STRING")},
                    required=["city"],
                ),
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(include_thoughts=True),
    )
    first = sdk.models.generate_content(
        model=THINKING_MODEL, contents="Paris", config=config
    )
    call_part = next(p for p in first.candidates[0].content.parts if p.function_call)
    assert call_part.function_call.name == "get_weather"
    assert call_part.function_call.args == {"city": "Paris"}
    assert call_part.thought_signature == b"sig:get_weather"
    assert first.candidates[0].content.parts[0].thought is True
    history = [
        types.Content(role="user", parts=[types.Part(text="Paris")]),
        first.candidates[0].content,
        types.Content(
            role="user",
            parts=[
                types.Part.from_function_response(
                    name="get_weather", response={"temp": 21}
                )
            ],
        ),
    ]
    final = sdk.models.generate_content(
        model=THINKING_MODEL, contents=history, config=config
    )
    assert final.text == 'Result: get_weather={"temp":21}'
    # The fake enforces Gemini 3's rule: a dropped signature is a 400.
    history[1] = types.Content(
        role="model", parts=[types.Part(function_call=call_part.function_call)]
    )
    with pytest.raises(genai.errors.ClientError) as exc:
        sdk.models.generate_content(
            model=THINKING_MODEL, contents=history, config=config
        )
    assert "thought_signature" in str(exc.value)


# -- chat through the gateway ------------------------------------------------


def test_chat_translates_and_reports_usage(gemini, client):
    out = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello world"},
        ],
        temperature=0.3,
        max_tokens=20,
        stop=["END"],
    )
    assert out.choices[0].message.content == "echo: hello world"
    assert out.choices[0].finish_reason == "stop"
    assert out.model == MODEL
    assert out.usage.prompt_tokens == 4 and out.usage.completion_tokens == 3
    assert out.usage.total_tokens == 7
    sent = gemini.upstream.requests[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == fake_google.API_KEY
    assert "authorization" not in sent.headers
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "hello world"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {
            "temperature": 0.3,
            "maxOutputTokens": 20,
            "stopSequences": ["END"],
        },
    }


def test_stream_translates_and_counts_usage(gemini, client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    sent = gemini.upstream.requests[-1]
    assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    got = assemble(chunks)
    assert got["content"] == "echo: one two three"
    assert got["finish_reason"] == "stop"
    assert chunks[-1].choices == [] and got["usage"]["total_tokens"] == 3 + 4
    assert chunks[0].choices[0].delta.role == "assistant"


def test_stream_without_include_usage_has_no_usage_chunk(gemini, client):
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks)
    assert assemble(chunks)["content"] == "echo: hi"


def test_stream_equals_non_stream(gemini, client):
    """One scripted answer (thoughts, text, two calls) fetched both ways."""
    sig = fake_google.signature_for("get_weather")
    parts = [
        {"text": "Two cities, two calls.", "thought": True},
        {"text": "Checking both."},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
            "thoughtSignature": sig,
        },
        {
            "functionCall": {
                "name": "get_weather",
                "args": {"city": "Bergen", "unit": "c"},
            }
        },
    ]
    usage = {
        "promptTokenCount": 31,
        "candidatesTokenCount": 12,
        "thoughtsTokenCount": 40,
        "cachedContentTokenCount": 8,
        "totalTokenCount": 83,
    }
    whole_answer = {
        "candidates": [
            {
                "content": {"parts": parts, "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage,
        "modelVersion": MODEL,
        "responseId": "same-answer",
    }
    gemini.upstream.enqueue(
        Reply(json=whole_answer),
        Reply(
            events=fake_google.stream_events(
                parts, usage, model=MODEL, response_id="same-answer"
            )
        ),
    )
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Oslo and Bergen?"}],
        "tools": [WEATHER_TOOL],
    }
    whole = client.chat.completions.create(**kwargs)
    chunks = list(
        client.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = assemble(chunks)
    expected = flatten(whole)
    assert streamed == expected
    assert expected["finish_reason"] == "tool_calls"
    assert expected["content"] == "Checking both."
    assert expected["reasoning_content"] == "Two cities, two calls."
    assert [c["arguments"] for c in expected["tool_calls"]] == [
        '{"city":"Oslo"}',
        '{"city":"Bergen","unit":"c"}',
    ]
    assert expected["tool_calls"][0]["extra_content"] == {
        "google": {"thought_signature": sig}
    }
    assert expected["tool_calls"][1]["extra_content"] is None
    assert len({c["id"] for c in expected["tool_calls"]}) == 2
    usage = expected["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (31, 52)
    assert usage["total_tokens"] == 83  # Gemini's totalTokenCount
    assert usage["prompt_tokens_details"]["cached_tokens"] == 8
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 40


def test_agent_loop_with_thought_signatures(gemini, client):
    """Tools defined, model calls one, result sent back, final answer streamed."""
    messages: list[Any] = [
        {"role": "system", "content": "You answer weather questions."},
        {"role": "user", "content": "Lisbon"},
    ]
    first = client.chat.completions.create(
        model=THINKING_MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Lisbon"}
    assert call.model_extra["extra_content"] == {
        "google": {"thought_signature": fake_google.signature_for("get_weather")}
    }
    # The agent appends the SDK's message object as is, then the tool result.
    messages.append(msg)
    messages.append(
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 18})}
    )
    stream = client.chat.completions.create(
        model=THINKING_MODEL,
        messages=messages,
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    final = assemble(chunks)
    assert final["content"] == 'Result: get_weather={"temp":18}'
    assert final["finish_reason"] == "stop"
    sent = gemini.upstream.requests[-1].json
    model_turn = sent["contents"][1]
    assert model_turn["role"] == "model"
    assert model_turn["parts"][0]["thoughtSignature"] == fake_google.signature_for(
        "get_weather"
    )
    assert sent["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}}
    ]
    # Usage is what the fake reported on its last event.
    prompt = 4 + 1 + 2  # system words + "Lisbon" + one function response
    assert final["usage"]["prompt_tokens"] == prompt
    assert final["usage"]["completion_tokens"] == 2  # two words of text
    assert final["usage"]["total_tokens"] == prompt + 2


def test_dropped_signature_fails_like_gemini(gemini, client):
    first = client.chat.completions.create(
        model=THINKING_MODEL,
        messages=[{"role": "user", "content": "Rome"}],
        tools=[WEATHER_TOOL],
    )
    call = first.choices[0].message.tool_calls[0]
    bare = {"id": call.id, "type": "function", "function": call.function.model_dump()}
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=THINKING_MODEL,
            messages=[
                {"role": "user", "content": "Rome"},
                {"role": "assistant", "content": None, "tool_calls": [bare]},
                {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
            ],
            tools=[WEATHER_TOOL],
        )
    assert "thought_signature" in exc.value.body["message"]


def test_tool_schema_is_cleaned_for_gemini(gemini, client):
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Bern"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    sent = gemini.upstream.requests[-1].json
    assert sent["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING", "description": "City name"},
                            "unit": {
                                "type": "STRING",
                                "enum": ["c", "f"],
                                "nullable": True,
                            },
                        },
                        "required": ["city", "unit"],
                    },
                }
            ]
        }
    ]
    assert sent["toolConfig"] == {
        "functionCallingConfig": {
            "mode": "ANY",
            "allowedFunctionNames": ["get_weather"],
        }
    }


def test_images_become_inline_data_and_file_data(gemini, client):
    png = base64.b64encode(b"\x89PNG fake").decode()
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{png}"},
                    },
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg"},
                    },
                ],
            }
        ],
    )
    parts = gemini.upstream.requests[-1].json["contents"][0]["parts"]
    assert parts == [
        {"text": "what is this"},
        {"inlineData": {"mimeType": "image/png", "data": png}},
        {
            "fileData": {
                "mimeType": "image/jpeg",
                "fileUri": "https://example.com/cat.jpg",
            }
        },
    ]


def test_image_url_of_unknown_type_is_refused(gemini, client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "https://cdn.example/x?id=1"},
                        }
                    ],
                }
            ],
        )
    assert "google" in exc.value.body["message"]
    assert "data: URL" in exc.value.body["message"]
    assert gemini.upstream.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        (
            {"parallel_tool_calls": False, "tools": [WEATHER_TOOL]},
            "parallel_tool_calls",
        ),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "xhigh"}, "reasoning_effort"),
    ],
)
def test_unsupported_parameters_are_refused_by_name(gemini, client, extra, param):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            extra_body=extra,
        )
    assert exc.value.status_code == 400
    assert exc.value.body["param"] == param
    assert f"'{param}'" in exc.value.body["message"]
    assert "'google'" in exc.value.body["message"]
    assert gemini.upstream.requests == []


def test_gemini_400_is_passed_on_with_its_message(gemini, client):
    gemini.upstream.enqueue(
        fake_google.error(
            400,
            "* GenerateContentRequest.generation_config.temperature: must be <= 2",
            "INVALID_ARGUMENT",
        )
    )
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert "must be <= 2" in exc.value.body["message"]


def test_invalid_api_key_is_a_502_naming_provider_auth(gemini, app_factory, served):
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{gemini.upstream.url}/v1beta",
                    "api_key": "wrong",
                    "models": [MODEL],
                    "max_retries": 0,
                }
            }
        }
    )
    url = served(app_factory(config))
    sdk = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as exc:
            sdk.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], stream=stream
            )
        assert exc.value.status_code == 502
        assert "authentication with the provider failed" in exc.value.body["message"]
    assert gemini.upstream.requests[-1].headers["x-goog-api-key"] == "wrong"


def test_gemini_403_is_a_502_naming_provider_auth(gemini, client):
    gemini.upstream.enqueue(
        fake_google.error(
            403, "Method doesn't allow unregistered callers", "PERMISSION_DENIED"
        )
    )
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "authentication with the provider failed" in exc.value.body["message"]


def test_error_event_inside_stream_ends_it_with_an_error(gemini, client):
    first = fake_google.stream_events(
        [{"text": "partial-answer"}],
        {"promptTokenCount": 1},
        model=MODEL,
        response_id="r",
    )[0]
    gemini.upstream.enqueue(
        Reply(
            events=[
                first,
                {
                    "error": {
                        "code": 500,
                        "message": "Internal error encountered.",
                        "status": "INTERNAL",
                    }
                },
            ]
        )
    )
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError) as exc:
        for chunk in stream:
            seen.append(chunk)
    assert "Internal error encountered." in str(exc.value.message)
    assert assemble(seen)["content"] == "partial-answer"


def test_safety_block_is_content_filter(gemini, client):
    gemini.upstream.enqueue(
        Reply(
            json={
                "candidates": [
                    {
                        "finishReason": "SAFETY",
                        "index": 0,
                        "safetyRatings": [
                            {
                                "category": "HARM_CATEGORY_HARASSMENT",
                                "probability": "HIGH",
                            }
                        ],
                    }
                ],
                "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                "modelVersion": MODEL,
                "responseId": "blocked1",
            }
        )
    )
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert out.choices[0].finish_reason == "content_filter"
    assert out.choices[0].message.content is None
    assert out.usage.prompt_tokens == 9 and out.usage.completion_tokens == 0


def test_embeddings_via_batch_embed_contents(gemini, client):
    out = client.embeddings.create(
        model="text-embedding-004", input=["a b", "c"], dimensions=3
    )
    # The openai SDK asks for base64 (float32) by default and decodes it.
    assert [d.embedding for d in out.data] == [
        pytest.approx([0.2, 0.4, 0.6]),
        pytest.approx([0.1, 0.2, 0.3]),
    ]
    assert gemini.upstream.requests[-1].json["requests"][1]["content"] == {
        "parts": [{"text": "c"}]
    }
    sent = gemini.upstream.requests[-1]
    assert sent.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert sent.json["requests"][0] == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "a b"}]},
        "outputDimensionality": 3,
    }
    floats = client.embeddings.create(
        model="text-embedding-004", input="a", encoding_format="float"
    )
    assert floats.data[0].embedding == [0.1, 0.2, 0.3, 0.4]
    assert floats.usage.prompt_tokens == 0


def test_n_candidates_become_choices(gemini, client):
    gemini.upstream.enqueue(
        Reply(
            json={
                "candidates": [
                    {
                        "content": {"parts": [{"text": "one"}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    },
                    {
                        "content": {"parts": [{"text": "two"}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 1,
                    },
                ],
                "usageMetadata": {
                    "promptTokenCount": 2,
                    "candidatesTokenCount": 2,
                    "totalTokenCount": 4,
                },
                "modelVersion": MODEL,
                "responseId": "n2",
            }
        )
    )
    out = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], n=2
    )
    assert [c.message.content for c in out.choices] == ["one", "two"]
    assert gemini.upstream.requests[-1].json["generationConfig"] == {
        "candidateCount": 2
    }


def test_connection_dropped_mid_stream_ends_with_an_error_event(gemini, client):
    events = fake_google.stream_events(
        [{"text": "a b c"}], {"promptTokenCount": 1}, model=MODEL, response_id="d"
    )
    gemini.upstream.enqueue(Reply(events=events, drop_after=2))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    seen = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            seen.append(chunk)
    assert assemble(seen)["content"] == "a b"
    assert assemble(seen)["finish_reason"] is None


def _half_answer() -> list[Any]:
    """A stream's events for one text part, ending without its last event."""
    return fake_google.stream_events(
        [{"text": "half"}], {"promptTokenCount": 1}, model=MODEL, response_id="h"
    )


def _stream_error(gemini, client, events: list[Any]) -> str:
    """Stream `events` through the gateway; the error the SDK raises at the end."""
    gemini.upstream.enqueue(Reply(events=events))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    with pytest.raises(openai.APIError) as exc:
        list(stream)
    return str(exc.value.message)


def test_stream_that_stops_without_finish_reason_is_an_error(gemini, client):
    assert "finish reason" in _stream_error(gemini, client, _half_answer()[:-1])


def test_gemini_503_is_retried_then_answers(gemini, app_factory, served):
    config = make_config(
        {
            "providers": {
                "gem": {
                    "kind": "google",
                    "base_url": f"{gemini.upstream.url}/v1beta",
                    "api_key": fake_google.API_KEY,
                    "models": [MODEL],
                    "max_retries": 1,
                }
            }
        }
    )
    gemini.upstream.enqueue(
        fake_google.error(503, "The model is overloaded.", "UNAVAILABLE")
    )
    url = served(app_factory(config))
    sdk = openai.OpenAI(api_key="x", base_url=f"{url}/v1", max_retries=0)
    out = sdk.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert out.choices[0].message.content == "echo: hi"
    assert len(gemini.upstream.requests) == 2


def test_structured_output_reaches_gemini_as_a_clean_schema(gemini, client):
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "answer",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}
                    },
                    "required": ["items"],
                    "additionalProperties": False,
                    "$defs": {
                        "Item": {
                            "type": "object",
                            "properties": {"id": {"type": "string", "format": "uuid"}},
                            "required": ["id"],
                            "additionalProperties": False,
                        }
                    },
                },
            },
        },
    )
    cfg = gemini.upstream.requests[-1].json["generationConfig"]
    assert cfg == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "items": {
                    "type": "ARRAY",
                    "items": {
                        "type": "OBJECT",
                        "properties": {"id": {"type": "STRING"}},
                        "required": ["id"],
                    },
                }
            },
            "required": ["items"],
        },
    }


def test_openai_stream_helper_assembles_tool_calls(gemini, client):
    with client.chat.completions.stream(
        model=THINKING_MODEL,
        messages=[{"role": "user", "content": "Quito"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        final = stream.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Quito"}
    assert final.choices[0].finish_reason == "tool_calls"
    # The helper keeps the signature, so a helper-based agent echoes it.
    assert call.model_extra["extra_content"] == {
        "google": {"thought_signature": fake_google.signature_for("get_weather")}
    }


def test_agent_loop_under_gunicorn_gevent(gemini, gunicorn, tmp_path):
    """The real server (gunicorn, gevent workers) to the fake Gemini and back."""
    from tests.conftest import write_toml

    path = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[providers.gem]
kind = "google"
base_url = "{gemini.upstream.url}/v1beta"
api_key = "{fake_google.API_KEY}"
models = ["{THINKING_MODEL}"]
max_retries = 0

[storage]
kind = "memory"
""",
    )
    server = gunicorn(path, workers=1)
    sdk = openai.OpenAI(api_key="x", base_url=f"{server.url}/v1", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Nairobi"}]
    first = sdk.chat.completions.create(
        model=THINKING_MODEL, messages=messages, tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    messages += [
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 25}'},
    ]
    chunks = list(
        sdk.chat.completions.create(
            model=THINKING_MODEL,
            messages=messages,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    final = assemble(chunks)
    assert final["content"] == 'Result: get_weather={"temp":25}'
    assert final["usage"]["total_tokens"] == 1 + 2 + 2


def test_tool_result_for_an_unknown_call_is_a_400_before_gemini(gemini, client):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "call_missing", "content": "42"},
            ],
        )
    assert exc.value.body["param"] == "messages[1].tool_call_id"
    assert "call_missing" in exc.value.body["message"]
    assert gemini.upstream.requests == []


def test_function_without_parameters_is_declared_without_them(gemini, client):
    out = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "now"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "get_time",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
        tool_choice="required",
    )
    call = out.choices[0].message.tool_calls[0]
    assert (call.function.name, call.function.arguments) == ("get_time", "{}")
    sent = gemini.upstream.requests[-1].json
    assert sent["tools"] == [{"functionDeclarations": [{"name": "get_time"}]}]
    assert sent["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}


def test_first_chunk_arrives_before_gemini_finishes(gemini, client):
    import threading

    from tests.upstream import sse_bytes

    gate = threading.Event()
    events = fake_google.stream_events(
        [{"text": "first then rest"}],
        {"promptTokenCount": 1},
        model=MODEL,
        response_id="g",
    )

    def pieces():
        yield sse_bytes(events[0])
        gate.wait(10)  # hold the rest until the client has seen "first"
        for e in events[1:]:
            yield sse_bytes(e)

    gemini.upstream.enqueue(Reply(chunks=pieces()))
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    seen = []
    for chunk in stream:
        seen.append(chunk)
        if chunk.choices and chunk.choices[0].delta.content == "first":
            assert not gate.is_set()
            gate.set()
    assert assemble(seen)["content"] == "first then rest"
    assert gate.is_set()


@pytest.mark.parametrize(
    "answer",
    [{"candidates": 5}, {"candidates": [5]}, {"usageMetadata": "lots"}],
    ids=["candidates-int", "candidate-int", "usage-str"],
)
def test_an_answer_of_the_wrong_shape_is_the_providers_502(gemini, client, answer):
    """A field of the wrong type is the provider's fault (502 naming it), not
    an internal error of the gateway."""
    gemini.upstream.enqueue(Reply(json=answer))
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
    assert exc.value.status_code == 502
    assert "answered in a shape the gateway cannot read" in exc.value.message


def test_a_stream_event_of_the_wrong_shape_ends_it_with_an_error(gemini, client):
    events = _half_answer()[:1] + [{"candidates": [{"content": {"parts": 7}}]}]
    message = _stream_error(gemini, client, events)
    assert "answered in a shape the gateway cannot read" in message
