"""formats/gemini: the Gemini API <-> canonical chat, pure."""

from __future__ import annotations

import json
import re

import orjson
import pytest

from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.formats.gemini import extras, to_canonical, to_google
from crabllm_sync.formats.gemini.response import from_canonical, usage_metadata
from crabllm_sync.formats.gemini.stream import EventTranslator, Framing
from crabllm_sync.serving.settings import gunicorn_settings


def user(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def test_turns_system_and_config_translate():
    chat = to_canonical(
        {
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [user("hi")],
            "generationConfig": {
                "maxOutputTokens": 50,
                "temperature": 0.1,
                "topP": 0.9,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True},
            },
        },
        "m",
    )
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert chat["max_tokens"] == 50 and chat["top_p"] == 0.9 and chat["n"] == 2
    assert chat["stop"] == ["END"] and chat["reasoning_effort"] == "medium"


def test_function_call_and_response_pair_by_name_when_no_id():
    chat = to_canonical(
        {
            "contents": [
                user("weather?"),
                {
                    "role": "model",
                    "parts": [
                        {"text": "thinking", "thought": True},
                        {
                            "functionCall": {"name": "w", "args": {"c": "P"}},
                            "thoughtSignature": "sig",
                        },
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "w", "response": {"t": 1}}}
                    ],
                },
            ]
        },
        "m",
    )
    call = chat["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "w", "arguments": '{"c":"P"}'}
    assert call["extra_content"] == {"google": {"thought_signature": "sig"}}
    assert chat["messages"][1]["content"] is None  # the thought is not sent back
    tool = chat["messages"][2]
    assert tool["role"] == "tool" and tool["tool_call_id"] == call["id"]
    assert json.loads(tool["content"]) == {"t": 1}


def test_a_function_response_with_no_call_is_refused_by_name():
    body = {
        "contents": [{"role": "user", "parts": [{"functionResponse": {"name": "x"}}]}]
    }
    with pytest.raises(InvalidRequestError, match="answers no functionCall 'x'"):
        to_canonical(body, "m")


def test_inline_image_becomes_a_data_url():
    image = {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}
    chat = to_canonical({"contents": [{"role": "user", "parts": [image]}]}, "m")
    part = chat["messages"][0]["content"][0]
    assert part == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }


def test_schema_tools_tool_config_and_structured_output():
    schema = {
        "type": "OBJECT",
        "properties": {"c": {"type": "STRING", "nullable": True}},
        "required": ["c"],
    }
    chat = to_canonical(
        {
            "contents": [user("x")],
            "tools": [{"functionDeclarations": [{"name": "f", "parameters": schema}]}],
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}
            },
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": schema,
            },
        },
        "m",
    )
    params = chat["tools"][0]["function"]["parameters"]
    assert params == {
        "type": "object",
        "properties": {"c": {"type": ["string", "null"]}},
        "required": ["c"],
    }
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"]["json_schema"]["schema"] == params


@pytest.mark.parametrize(
    "body, param",
    [
        ({"cachedContent": "c"}, "cachedContent"),
        ({"tools": [{"googleSearch": {}}]}, "tools[0].googleSearch"),
        ({"generationConfig": {"responseModalities": ["IMAGE"]}}, "responseModalities"),
        ({"generationConfig": {"speechConfig": {}}}, "speechConfig"),
    ],
)
def test_what_chat_cannot_carry_is_refused_by_name(body, param):
    with pytest.raises(UnsupportedError, match=re.escape(param)):
        to_canonical({"contents": [user("x")], **body}, "m")


def test_answer_becomes_candidates_with_usage():
    answer = {
        "id": "chatcmpl-abc",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning_content": "hm",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 7,
            "total_tokens": 17,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    }
    out = from_canonical(answer, "m")
    cand = out["candidates"][0]
    assert cand["finishReason"] == "STOP"
    assert cand["content"]["parts"] == [
        {"text": "hm", "thought": True},
        {"functionCall": {"id": "call_1", "name": "f", "args": {"a": 1}}},
    ]
    assert out["usageMetadata"] == {
        "promptTokenCount": 10,
        "candidatesTokenCount": 5,
        "totalTokenCount": 17,
        "thoughtsTokenCount": 2,
    }
    assert out["responseId"] == "abc"


def test_stream_gathers_tool_call_fragments_and_ends_with_usage():
    tr = EventTranslator("m")

    def chunk(delta, finish=None):
        return {
            "id": "chatcmpl-x",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events = tr.feed(chunk({"content": "Hi"}))
    events += tr.feed(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "c1",
                        "function": {"name": "f", "arguments": '{"a"'},
                    }
                ]
            }
        )
    )
    events += tr.feed(
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]})
    )
    events += tr.feed(chunk({}, "tool_calls"))
    assert len(events) == 1  # the finish waits for the usage
    events += tr.feed(
        {
            "id": "chatcmpl-x",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }
    )
    assert tr.finish() == []
    last = events[-1]
    assert last["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"id": "c1", "name": "f", "args": {"a": 1}}}
    ]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["usageMetadata"]["promptTokenCount"] == 3


def test_json_array_framing_is_one_valid_array_even_when_it_fails():
    framing = Framing(sse=False)
    data = framing.frame([{"a": 1}], last=False) + framing.frame([{"b": 2}], last=False)
    data += framing.error(UpstreamError("x: boom", provider="x", upstream_status=503))
    events = orjson.loads(data)
    assert events[:2] == [{"a": 1}, {"b": 2}]
    assert events[2]["error"]["status"] == "UNAVAILABLE"
    assert orjson.loads(Framing(sse=False).frame([], last=True)) == []


def test_sse_framing_is_data_lines():
    assert Framing(sse=True).frame([{"a": 1}], last=True) == b'data: {"a":1}\r\n\r\n'


def test_errors_have_google_status_names():
    err = InvalidRequestError("bad")
    assert to_google(err) == {
        "error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}
    }


def test_count_estimate_reads_text_and_calls_not_inline_data():
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "x" * 40}, {"inlineData": {"data": "A" * 4000}}],
            }
        ]
    }
    assert extras.estimate_count(body) == {"totalTokens": 10}


def test_usage_metadata_without_usage_is_zero():
    assert usage_metadata(None)["totalTokenCount"] == 0


def test_access_log_never_carries_the_query_string():
    fmt = gunicorn_settings(listen="127.0.0.1:1", workers=1)["access_log_format"]
    assert "%(U)s" in fmt and "%(r)s" not in fmt and "%(q)s" not in fmt
