"""Gemini translation, pinned by fixtures in tests/fixtures/google/."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from crabllm_sync import sse
from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.providers import google
from crabllm_sync.providers.google.schema import clean_schema
from tests.fuzzing import examples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "google"
CREATED = 1700000000
MEETING_ARGS = {
    "attendees": ["Bob", "Alice"],
    "date": "2025-03-14",
    "time": "10:00",
    "topic": "Q3 planning",
}


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def replay(name: str, *, include_usage: bool = True) -> list[dict[str, Any]]:
    tr = google.ChunkTranslator("asked-model", CREATED, include_usage=include_usage)
    lines = (FIXTURES / name).read_bytes().splitlines()
    out: list[dict[str, Any]] = []
    for event in sse.parse(lines):
        out += tr.feed(json.loads(event.data))
    return out + tr.finish()


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def req(**over: Any) -> dict[str, Any]:
    return {"model": "gemini-2.5-flash", "messages": [user("hi")], **over}


# -- requests ------------------------------------------------------------------


def test_chat_request_fixture():
    got = google.translate_request(load("chat_request.json"))
    assert got == load("expected_chat_request.json")


def test_tools_request_fixture_carries_signature_and_function_name():
    got = google.translate_request(load("tools_request.json"))
    assert got == load("expected_tools_request.json")


def test_consecutive_tool_results_share_one_user_turn():
    calls = [
        {"id": "x1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "x2", "type": "function", "function": {"name": "b", "arguments": ""}},
    ]
    got = google.translate_request(
        req(
            messages=[
                user("go"),
                {"role": "assistant", "content": "on it", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "x1", "content": "plain text"},
                {
                    "role": "tool",
                    "tool_call_id": "x2",
                    "content": [{"type": "text", "text": "[1]"}],
                },
                user("thanks"),
            ]
        )
    )
    assert got["contents"][1] == {
        "role": "model",
        "parts": [
            {"text": "on it"},
            {"functionCall": {"name": "a", "args": {}, "id": "x1"}},
            {"functionCall": {"name": "b", "args": {}, "id": "x2"}},
        ],
    }
    # Gemini's own ids go back on the responses too; non-objects are wrapped.
    assert got["contents"][2] == {
        "role": "user",
        "parts": [
            {
                "functionResponse": {
                    "name": "a",
                    "response": {"output": "plain text"},
                    "id": "x1",
                }
            },
            {
                "functionResponse": {
                    "name": "b",
                    "response": {"output": "[1]"},
                    "id": "x2",
                }
            },
            {"text": "thanks"},
        ],
    }


def test_tool_result_without_a_matching_call_is_a_400():
    with pytest.raises(InvalidRequestError) as exc:
        google.translate_request(
            req(
                messages=[
                    user("x"),
                    {"role": "tool", "tool_call_id": "nope", "content": "1"},
                ]
            )
        )
    assert exc.value.param == "messages[1].tool_call_id"
    assert "function name" in exc.value.message


@pytest.mark.parametrize(
    ("over", "param"),
    [
        ({"tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tool_choice": {"type": "function", "function": {}}},
            "tool_choice.function.name",
        ),
        ({"google": ["not", "an", "object"]}, "google"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"messages": [{"role": "critic", "content": "x"}]}, "messages[0].role"),
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ]
            },
            "messages[0].content[0].type",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(over, param):
    with pytest.raises(InvalidRequestError) as exc:
        google.translate_request(req(**over))
    assert exc.value.param == param
    assert exc.value.status == 400


def test_bad_tool_call_arguments_are_a_400():
    bad = {
        "id": "c",
        "type": "function",
        "function": {"name": "f", "arguments": "{oops"},
    }
    with pytest.raises(InvalidRequestError) as exc:
        google.translate_request(
            req(messages=[user("x"), {"role": "assistant", "tool_calls": [bad]}])
        )
    assert exc.value.param == "messages[1].tool_calls[0].function.arguments"


def test_message_level_signature_goes_back_on_the_text_part():
    got = google.translate_request(
        req(
            messages=[
                user("x"),
                {
                    "role": "assistant",
                    "content": "done",
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                },
                user("more"),
            ]
        )
    )
    assert got["contents"][1]["parts"] == [{"text": "done", "thoughtSignature": "c2ln"}]


def test_developer_messages_join_the_system_instruction():
    got = google.translate_request(
        req(
            messages=[
                {"role": "developer", "content": [{"type": "text", "text": "rule 1"}]},
                {"role": "system", "content": "rule 2"},
                user("hi"),
            ]
        )
    )
    assert got["systemInstruction"] == {
        "parts": [{"text": "rule 1"}, {"text": "rule 2"}]
    }


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
        (
            {
                "type": "allowed_tools",
                "allowed_tools": {
                    "mode": "auto",
                    "tools": [{"type": "function", "function": {"name": "f"}}],
                },
            },
            {"mode": "VALIDATED", "allowedFunctionNames": ["f"]},
        ),
    ],
)
def test_tool_choice(choice, config):
    tool = {"type": "function", "function": {"name": "f"}}
    got = google.translate_request(req(tools=[tool], tool_choice=choice))
    assert got["toolConfig"] == {"functionCallingConfig": config}
    assert got["tools"] == [{"functionDeclarations": [{"name": "f"}]}]


def test_legacy_functions_and_function_call():
    got = google.translate_request(
        req(
            functions=[
                {"name": "f", "parameters": {"type": "object", "properties": {}}}
            ],
            function_call={"name": "f"},
        )
    )
    # An object with no properties is refused by Gemini: no parameters at all.
    assert got["tools"] == [{"functionDeclarations": [{"name": "f"}]}]
    assert got["toolConfig"]["functionCallingConfig"]["allowedFunctionNames"] == ["f"]


@pytest.mark.parametrize(
    ("fmt", "config"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "point",
                    "strict": True,
                    "schema": {
                        "type": "object",
                        "properties": {"x": {"type": "integer", "default": 0}},
                        "required": ["x"],
                        "additionalProperties": False,
                    },
                },
            },
            {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "OBJECT",
                    "properties": {"x": {"type": "INTEGER"}},
                    "required": ["x"],
                },
            },
        ),
    ],
)
def test_response_format(fmt, config):
    got = google.translate_request(req(response_format=fmt))
    assert got.get("generationConfig") == config


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0, "includeThoughts": False}),
        ("gemini-2.5-pro", "medium", {"thinkingBudget": 8192, "includeThoughts": True}),
        (
            "gemini-3-pro-preview",
            "high",
            {"thinkingLevel": "high", "includeThoughts": True},
        ),
    ],
)
def test_reasoning_effort(model, effort, thinking):
    got = google.translate_request(req(model=model, reasoning_effort=effort))
    assert got["generationConfig"]["thinkingConfig"] == thinking


def test_google_extension_fields():
    got = google.translate_request(
        req(
            google={
                "thinking_config": {"thinking_budget": 512, "include_thoughts": True},
                "cached_content": "cachedContents/abc",
                "safety_settings": [
                    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}
                ],
            },
            presence_penalty=0.5,
            frequency_penalty=0.25,
            top_k=40,
            max_tokens=10,
        )
    )
    assert got["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 512, "includeThoughts": True},
        "presencePenalty": 0.5,
        "frequencyPenalty": 0.25,
        "topK": 40,
        "maxOutputTokens": 10,
    }
    assert got["cachedContent"] == "cachedContents/abc"
    assert got["safetySettings"][0]["threshold"] == "BLOCK_NONE"


@pytest.mark.parametrize(
    ("over", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"store": True}, "store"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy"}}, "audio"),
        ({"prediction": {"type": "content"}}, "prediction"),
        ({"verbosity": "low"}, "verbosity"),
        ({"brand_new_param": {"x": 1}}, "brand_new_param"),
        ({"reasoning_effort": "xhigh"}, "reasoning_effort"),
        ({"google": {"labels": {}}}, "google.labels"),
        ({"extra_body": {"google": {"labels": {}}}}, "extra_body.google.labels"),
        ({"extra_body": {"other": 1}}, "extra_body.other"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools[0].type"),
        ({"response_format": {"type": "grammar"}}, "response_format.type"),
    ],
)
def test_refused_parameters_are_named(over, param):
    with pytest.raises(UnsupportedError) as exc:
        google.translate_request(req(**over))
    assert exc.value.param == param
    assert "'google'" in exc.value.message
    assert exc.value.status == 400


def test_google_options_nested_in_extra_body_as_google_documents():
    got = google.translate_request(
        req(extra_body={"google": {"thinking_config": {"include_thoughts": True}}})
    )
    assert got["generationConfig"] == {"thinkingConfig": {"includeThoughts": True}}


def test_gemini_3_cannot_switch_thinking_off():
    with pytest.raises(UnsupportedError):
        google.translate_request(
            req(model="gemini-3-flash-preview", reasoning_effort="none")
        )


@pytest.mark.parametrize(
    "over",
    [
        {"logprobs": False},
        {"parallel_tool_calls": True},
        {"user": "u-1", "safety_identifier": "s", "prompt_cache_key": "k"},
        {"metadata": {"user_id": "u-1"}},
        {"service_tier": "auto", "store": False, "modalities": ["text"]},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"temperature": None, "logit_bias": None},
    ],
)
def test_accepted_parameters_do_not_reach_gemini_as_unknown_fields(over):
    got = google.translate_request(req(**over))
    assert set(got) == {"contents"}


def test_content_parts():
    got = google.translate_request(
        req(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "input_audio",
                            "input_audio": {"data": "UklG", "format": "wav"},
                        },
                        {
                            "type": "file",
                            "file": {
                                "file_data": "data:application/pdf;base64,JVBE",
                                "filename": "a.pdf",
                            },
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "gs://bucket/cat.png"},
                        },
                    ],
                }
            ]
        )
    )
    assert got["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBE"}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}},
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "image_url", "image_url": {"url": "https://x.example/img"}},
            "messages[0].content[0].image_url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://x/a.png"}},
            "messages[0].content[0].image_url",
        ),
        (
            {"type": "file", "file": {"file_id": "file-abc"}},
            "messages[0].content[0].file.file_id",
        ),
        ({"type": "video", "video": {}}, "messages[0].content[0].type"),
    ],
)
def test_unusable_content_parts_are_refused(part, param):
    with pytest.raises(UnsupportedError) as exc:
        google.translate_request(req(messages=[{"role": "user", "content": [part]}]))
    assert exc.value.param == param


def test_non_base64_data_url_is_a_400():
    part = {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}
    with pytest.raises(InvalidRequestError):
        google.translate_request(req(messages=[{"role": "user", "content": [part]}]))


# -- JSON Schema cleaning --------------------------------------------------------


def test_schema_refs_are_inlined_and_recursion_stops():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "owner": {"$ref": "#/$defs/Person", "description": "who owns it"},
            "tags": {"type": "array", "items": {"type": "string", "format": "uuid"}},
        },
        "required": ["owner", "missing"],
        "$defs": {
            "Person": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "boss": {"anyOf": [{"$ref": "#/$defs/Person"}, {"type": "null"}]},
                    "born": {"type": "string", "format": "date-time"},
                },
                "required": ["name"],
                "additionalProperties": False,
            }
        },
    }
    assert clean_schema(schema, "p") == {
        "type": "OBJECT",
        "properties": {
            "owner": {
                "type": "OBJECT",
                "properties": {
                    "name": {"type": "STRING", "minLength": 1},
                    "boss": {"type": "OBJECT", "nullable": True},
                    "born": {"type": "STRING", "format": "date-time"},
                },
                "required": ["name"],
                "description": "who owns it",
            },
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
        },
        "required": ["owner"],
    }


def test_schema_unions_consts_and_all_of():
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": ["integer", "string"]},
            "kind": {"const": "point"},
            "size": {"oneOf": [{"type": "number"}, {"type": "null"}], "examples": [1]},
            "level": {"type": "integer", "enum": [1, 2]},
            "both": {
                "allOf": [
                    {
                        "type": "object",
                        "properties": {"a": {"type": "boolean"}},
                        "required": ["a"],
                    },
                    {"properties": {"b": {"type": "string"}}},
                ]
            },
        },
    }
    assert clean_schema(schema, "p")["properties"] == {
        "id": {"anyOf": [{"type": "INTEGER"}, {"type": "STRING"}]},
        "kind": {"type": "STRING", "enum": ["point"]},
        "size": {"type": "NUMBER", "nullable": True},
        "level": {"type": "INTEGER", "enum": ["1", "2"]},
        "both": {
            "type": "OBJECT",
            "properties": {"a": {"type": "BOOLEAN"}, "b": {"type": "STRING"}},
            "required": ["a"],
        },
    }


def test_schema_remote_ref_is_refused():
    with pytest.raises(UnsupportedError) as exc:
        clean_schema(
            {"$ref": "https://example.com/s.json"}, "tools[0].function.parameters"
        )
    assert exc.value.param == "tools[0].function.parameters"


# -- responses --------------------------------------------------------------------


def test_text_response_fixture():
    got = google.translate_response(
        load("response_text.json"), model="m", created=CREATED
    )
    assert got == load("expected_response_text.json")


def test_function_call_response_fixture():
    got = google.translate_response(
        load("response_function_call.json"), model="m", created=CREATED
    )
    assert got == load("expected_response_function_call.json")


def test_generated_call_ids_are_stable_and_distinct():
    native = load("response_function_call.json")
    call = native["candidates"][0]["content"]["parts"][1]["functionCall"]
    del call["id"]
    second = {"functionCall": {"name": "schedule_meeting", "args": {"topic": "x"}}}
    native["candidates"][0]["content"]["parts"].append(second)
    one = google.translate_response(native, model="m", created=CREATED)
    two = google.translate_response(native, model="m", created=CREATED + 5)
    ids = [c["id"] for c in one["choices"][0]["message"]["tool_calls"]]
    assert ids == [c["id"] for c in two["choices"][0]["message"]["tool_calls"]]
    assert all(re.fullmatch(r"call_[0-9a-f]{24}", i) for i in ids)
    assert ids[0] != ids[1]


def test_several_candidates_become_several_choices():
    native = {
        "candidates": [
            {
                "content": {"parts": [{"text": "a"}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            },
            {
                "content": {"parts": [{"text": "b"}], "role": "model"},
                "finishReason": "MAX_TOKENS",
                "index": 1,
            },
        ],
        "usageMetadata": {
            "promptTokenCount": 2,
            "candidatesTokenCount": 2,
            "totalTokenCount": 4,
        },
    }
    got = google.translate_response(native, model="gemini-x", created=CREATED)
    assert [
        (c["index"], c["message"]["content"], c["finish_reason"])
        for c in got["choices"]
    ] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]
    assert got["model"] == "gemini-x"
    assert got["id"].startswith("chatcmpl-")


def test_blocked_prompt_is_content_filter():
    native = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
    }
    got = google.translate_response(native, model="m", created=CREATED)
    assert got["choices"][0]["finish_reason"] == "content_filter"
    assert got["choices"][0]["message"]["content"] is None
    assert got["usage"]["prompt_tokens"] == 5


def test_a_part_openai_cannot_carry_is_an_upstream_error():
    native = {
        "candidates": [
            {
                "content": {
                    "parts": [{"inlineData": {"mimeType": "image/png", "data": "x"}}]
                },
                "finishReason": "STOP",
            }
        ]
    }
    with pytest.raises(UpstreamError) as exc:
        google.translate_response(native, model="m", created=CREATED)
    assert "inlineData" in exc.value.message


@pytest.mark.parametrize(
    ("reason", "calls", "expected"),
    [
        (None, False, None),
        ("STOP", False, "stop"),
        ("STOP", True, "tool_calls"),
        ("MAX_TOKENS", True, "length"),
        ("SAFETY", False, "content_filter"),
        ("RECITATION", False, "content_filter"),
        ("BLOCKLIST", False, "content_filter"),
        ("PROHIBITED_CONTENT", False, "content_filter"),
        ("SPII", False, "content_filter"),
        ("MALFORMED_FUNCTION_CALL", False, "stop"),
        ("OTHER", False, "stop"),
    ],
)
def test_map_finish_reason(reason, calls, expected):
    assert google.map_finish_reason(reason, calls) == expected


def test_map_usage_counts_thoughts_and_tool_prompts():
    usage = google.map_usage(
        {
            "promptTokenCount": 100,
            "toolUsePromptTokenCount": 10,
            "candidatesTokenCount": 20,
            "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 50,
            "totalTokenCount": 160,
        }
    )
    assert usage == {
        "prompt_tokens": 110,
        "completion_tokens": 50,
        "total_tokens": 160,
        "prompt_tokens_details": {"cached_tokens": 50},
        "completion_tokens_details": {"reasoning_tokens": 30},
    }
    assert google.map_usage(None)["total_tokens"] == 0


# -- streams ----------------------------------------------------------------------


def test_stream_fixture():
    assert replay("stream.sse") == load("expected_stream_chunks.json")


def test_stream_without_include_usage_ends_at_the_finish_chunk():
    chunks = replay("stream.sse", include_usage=False)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all("usage" not in c for c in chunks)


def test_stream_function_calls_become_indexed_tool_call_deltas():
    chunks = replay("stream_function_call.sse")
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "Planning the call."}
    first, second = deltas[2]["tool_calls"][0], deltas[3]["tool_calls"][0]
    assert first["index"] == 0 and second["index"] == 1
    assert first["function"] == {
        "name": "schedule_meeting",
        "arguments": json.dumps(MEETING_ARGS, separators=(",", ":")),
    }
    assert first["extra_content"] == {"google": {"thought_signature": "CiQBcsjafAbc="}}
    assert "extra_content" not in second
    assert (
        re.fullmatch(r"call_[0-9a-f]{24}", first["id"]) and first["id"] != second["id"]
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 31 + 58
    assert chunks[-1]["usage"]["total_tokens"] == 209
    # The same answer non-streamed gives the same ids.
    whole = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"text": "Planning the call.", "thought": True},
                        {
                            "functionCall": {
                                "name": "schedule_meeting",
                                "args": MEETING_ARGS,
                            }
                        },
                        {
                            "functionCall": {
                                "name": "send_invite",
                                "args": {"to": "Bob"},
                            }
                        },
                    ]
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "responseId": "fc-resp-1",
    }
    calls = google.translate_response(whole, model="m", created=CREATED)["choices"][0][
        "message"
    ]["tool_calls"]
    assert [c["id"] for c in calls] == [first["id"], second["id"]]


def test_stream_error_event_raises():
    tr = google.ChunkTranslator("m", CREATED)
    tr.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0}]})
    with pytest.raises(UpstreamError) as exc:
        tr.feed(
            {
                "error": {
                    "code": 503,
                    "message": "The model is overloaded.",
                    "status": "UNAVAILABLE",
                }
            }
        )
    assert "overloaded" in exc.value.message
    assert exc.value.is_transient


def test_stream_that_ends_without_finish_reason_raises():
    tr = google.ChunkTranslator("m", CREATED)
    tr.feed({"candidates": [{"content": {"parts": [{"text": "a"}]}, "index": 0}]})
    with pytest.raises(UpstreamError):
        tr.finish()


def test_stream_blocked_prompt_finishes_with_content_filter():
    tr = google.ChunkTranslator("m", CREATED, include_usage=True)
    out = tr.feed(
        {
            "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 3},
        }
    )
    assert out[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert tr.finish()[0]["usage"]["prompt_tokens"] == 3


def test_stream_of_two_candidates_keeps_their_indexes():
    tr = google.ChunkTranslator("m", CREATED)
    out = tr.feed(
        {
            "candidates": [
                {
                    "content": {"parts": [{"text": "a"}]},
                    "index": 0,
                    "finishReason": "STOP",
                },
                {
                    "content": {"parts": [{"functionCall": {"name": "f", "args": {}}}]},
                    "index": 1,
                    "finishReason": "STOP",
                },
            ]
        }
    )
    finishes = {
        c["choices"][0]["index"]: c["choices"][0]["finish_reason"]
        for c in out
        if c["choices"][0]["finish_reason"]
    }
    assert finishes == {0: "stop", 1: "tool_calls"}
    assert tr.finish() == []


# -- embeddings --------------------------------------------------------------------


def test_embeddings_request_and_base64_response():
    body = {
        "model": "text-embedding-004",
        "input": "hello",
        "dimensions": 2,
        "encoding_format": "base64",
    }
    native = google.translate_embeddings_request(body, "text-embedding-004")
    assert native == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "hello"}]},
                "outputDimensionality": 2,
            }
        ]
    }
    got = google.translate_embeddings_response(
        {"embeddings": [{"values": [1.0, -2.0]}]},
        model="text-embedding-004",
        encoding_format="base64",
    )
    # float32 little-endian 1.0, -2.0
    assert got["data"][0]["embedding"] == "AACAPwAAAMA="


def test_embeddings_refuse_token_arrays():
    with pytest.raises(UnsupportedError):
        google.translate_embeddings_request({"model": "e", "input": [[1, 2]]}, "e")


# -- any JSON Schema: a Gemini schema or a named 400, never a crash --------------

_GEMINI_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "items",
    "properties",
    "required",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "minProperties",
    "maxProperties",
    "anyOf",
    "propertyOrdering",
}


def _schemas():
    from hypothesis import strategies as st

    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 5),
        st.sampled_from(["a", "b", "uuid"]),
    )
    type_names = st.sampled_from(
        ["string", "number", "integer", "boolean", "array", "object", "null"]
    )
    leaf = st.fixed_dictionaries(
        {},
        optional={
            "type": st.one_of(type_names, st.lists(type_names, max_size=3)),
            "format": st.sampled_from(["uuid", "date-time", "int64", "email"]),
            "enum": st.lists(scalar, max_size=3),
            "const": scalar,
            "default": scalar,
            "description": st.text(max_size=5),
            "additionalProperties": st.booleans(),
            "$ref": st.sampled_from(["#/$defs/A", "#/definitions/A"]),
        },
    )

    def extend(children):
        return st.fixed_dictionaries(
            {},
            optional={
                "type": type_names,
                "properties": st.dictionaries(
                    st.sampled_from(["p", "q", "r"]), children, max_size=3
                ),
                "required": st.lists(st.sampled_from(["p", "q", "x"]), max_size=3),
                "items": children,
                "anyOf": st.lists(children, max_size=3),
                "oneOf": st.lists(children, max_size=2),
                "allOf": st.lists(children, max_size=2),
                "prefixItems": st.lists(children, min_size=1, max_size=2),
                "$defs": st.fixed_dictionaries({"A": children}),
            },
        )

    return st.recursive(leaf, extend, max_leaves=12)


def _walk(schema: dict[str, Any]) -> None:
    assert set(schema) <= _GEMINI_KEYS, set(schema) - _GEMINI_KEYS
    if "type" in schema:
        assert schema["type"] in {
            "STRING",
            "NUMBER",
            "INTEGER",
            "BOOLEAN",
            "ARRAY",
            "OBJECT",
        }
    if "enum" in schema:
        assert all(isinstance(v, str) for v in schema["enum"])
    if "required" in schema:
        assert set(schema["required"]) <= set(schema.get("properties", {}))
    for sub in (schema.get("properties") or {}).values():
        _walk(sub)
    for sub in schema.get("anyOf") or []:
        _walk(sub)
    if "items" in schema:
        _walk(schema["items"])


def test_any_json_schema_cleans_to_gemini_fields_or_is_refused():
    from hypothesis import given, settings

    @settings(max_examples=examples(150), deadline=None)
    @given(_schemas())
    def check(schema):
        try:
            out = clean_schema(schema, "p")
        except UnsupportedError as exc:
            assert exc.param == "p" or exc.param.startswith("p")
            return
        _walk(out)

    check()


# -- any OpenAI request: a body Gemini's own types accept, or a named 400 --------


def _requests():
    from hypothesis import strategies as st

    text = st.text(max_size=6)
    part = st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, text),
        st.just(
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}
        ),
        st.just(
            {"type": "image_url", "image_url": {"url": "https://x.example/a.webp"}}
        ),
        st.just(
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "mp3"}}
        ),
    )
    content = st.one_of(st.none(), text, st.lists(part, max_size=3))
    call = st.builds(
        lambda i, name, args: {
            "id": i,
            "type": "function",
            "function": {"name": name, "arguments": args},
            "extra_content": {"google": {"thought_signature": "c2ln"}},
        },
        st.sampled_from(["c1", "c2", "call_0123456789abcdef01234567"]),
        st.sampled_from(["f", "g"]),
        st.sampled_from(["{}", '{"a": 1}', "", "[1]", "{bad"]),
    )
    message = st.one_of(
        st.builds(lambda c: {"role": "user", "content": c}, content),
        st.builds(lambda c: {"role": "system", "content": c}, text),
        st.builds(
            lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
            st.one_of(st.none(), text),
            st.lists(call, max_size=2),
        ),
        st.builds(
            lambda i, c: {"role": "tool", "tool_call_id": i, "content": c},
            st.sampled_from(["c1", "c2", "nope"]),
            st.sampled_from(["ok", '{"x": 1}', "[2]"]),
        ),
    )
    tool = st.builds(
        lambda name, params: {
            "type": "function",
            "function": {"name": name, "parameters": params},
        },
        st.sampled_from(["f", "g"]),
        st.one_of(
            st.none(),
            st.just({"type": "object", "properties": {}}),
            st.just(
                {
                    "type": "object",
                    "properties": {"a": {"type": ["integer", "null"], "default": 1}},
                    "required": ["a"],
                    "additionalProperties": False,
                }
            ),
        ),
    )
    return st.fixed_dictionaries(
        {
            "model": st.sampled_from(["gemini-2.5-flash", "gemini-3-pro-preview"]),
            "messages": st.lists(message, min_size=1, max_size=5),
        },
        optional={
            "tools": st.lists(tool, max_size=2),
            "tool_choice": st.sampled_from(
                [
                    "auto",
                    "none",
                    "required",
                    {"type": "function", "function": {"name": "f"}},
                ]
            ),
            "temperature": st.floats(0, 2),
            "max_tokens": st.integers(1, 100),
            "stop": st.one_of(text, st.lists(text, max_size=3)),
            "n": st.integers(1, 3),
            "reasoning_effort": st.sampled_from(["none", "low", "high", "xhigh"]),
            "response_format": st.sampled_from(
                [
                    {"type": "text"},
                    {"type": "json_object"},
                    {
                        "type": "json_schema",
                        "json_schema": {
                            "name": "x",
                            "schema": {
                                "type": "object",
                                "properties": {"a": {"type": "string"}},
                            },
                        },
                    },
                ]
            ),
            "logprobs": st.booleans(),
            "parallel_tool_calls": st.booleans(),
        },
    )


def test_any_chat_request_translates_to_a_valid_gemini_body_or_a_400():
    from hypothesis import given, settings

    from crabllm_sync.errors import GatewayError
    from tests.fakes.google import GeminiFake
    from tests.upstream import Recorded

    fake = GeminiFake()

    @settings(max_examples=examples(200), deadline=None)
    @given(_requests())
    def check(body):
        before = json.dumps(body, sort_keys=True)
        try:
            native = google.translate_request(body)
        except GatewayError as exc:
            assert exc.http_status == 400 and exc.param
            return
        finally:
            assert json.dumps(body, sort_keys=True) == before, "input was mutated"
        rec = Recorded(
            method="POST",
            path=f"/v1beta/models/{body['model']}:generateContent",
            query={},
            headers={"x-goog-api-key": fake.api_key},
            body=json.dumps(native).encode(),
        )
        problem = fake.check(rec)
        # An empty conversation and a dropped signature are Gemini's to refuse.
        if problem is not None:
            message = problem.json["error"]["message"]
            assert (
                "contents is not specified" in message or "thought_signature" in message
            ), message

    check()


def test_only_the_first_text_signature_is_carried_both_ways():
    parts = [
        {"text": "Hi", "thoughtSignature": "Zmlyc3Q="},
        {"text": "", "thoughtSignature": "c2Vjb25k"},
    ]
    native = {"candidates": [{"content": {"parts": parts}, "finishReason": "STOP"}]}
    whole = google.translate_response(native, model="m", created=CREATED)
    message = whole["choices"][0]["message"]
    assert message["extra_content"] == {"google": {"thought_signature": "Zmlyc3Q="}}
    tr = google.ChunkTranslator("m", CREATED)
    deltas = [c["choices"][0]["delta"] for c in tr.feed(native)]
    signed = [d["extra_content"] for d in deltas if "extra_content" in d]
    assert signed == [message["extra_content"]]


def test_web_search_options_become_google_search_grounding():
    native = google.translate_request(req(web_search_options={}))
    assert {"googleSearch": {}} in native["tools"]
