"""Bedrock Converse translation, pinned by fixtures and botocore's service model."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crabllm_sync.errors import (
    InvalidRequestError,
    UnsupportedError,
    UpstreamError,
)
from crabllm_sync.providers import bedrock
from tests.fakes import bedrock as fake
from tests.fuzzing import examples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bedrock"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
ANSWERED = [c for c in CASES if (FIXTURES / c / "response.json").exists()]
STREAMED = [c for c in CASES if (FIXTURES / c / "stream.json").exists()]
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
TOOL = {"type": "function", "function": {"name": "top_song"}}
TOOL_USE_ID = re.compile(r"^[a-zA-Z0-9_.:-]{1,64}$")  # Converse's ToolUseId


def load(case: str, name: str) -> Any:
    return json.loads((FIXTURES / case / name).read_text())


def with_bytes(value: Any) -> Any:
    """Fixture JSON -> Python: {"$base64": s} stands for bytes."""
    if isinstance(value, dict):
        if set(value) == {"$base64"}:
            return base64.b64decode(value["$base64"])
        return {k: with_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [with_bytes(v) for v in value]
    return value


@pytest.fixture(scope="module")
def converse_shape() -> Any:
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    return model.operation_model("Converse").input_shape


def assert_valid(params: dict[str, Any], shape: Any) -> None:
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()


def body(**over: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **over}


def without_ids(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("id", "created")}


# -- requests -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_request_fixture_translates_to_documented_converse(case, converse_shape):
    out = bedrock.translate_request(load(case, "request.json"))
    assert out == with_bytes(load(case, "expected_converse.json"))
    assert_valid(out, converse_shape)


def test_stream_request_has_the_converse_stream_shape():
    model = botocore.session.get_session().get_service_model("bedrock-runtime")
    shape = model.operation_model("ConverseStream").input_shape
    out = bedrock.translate_request(load("tool_result", "request.json"))
    assert_valid(out, shape)


def test_consecutive_same_role_messages_are_merged():
    out = bedrock.translate_request(
        body(
            messages=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"},
            ]
        )
    )
    assert out["messages"] == [
        {"role": "user", "content": [{"text": "a"}, {"text": "b"}]},
        {"role": "assistant", "content": [{"text": "c"}, {"text": "d"}]},
        {"role": "user", "content": [{"text": "e"}]},
    ]


def test_parallel_tool_results_share_one_user_turn(converse_shape):
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "f", "arguments": json.dumps({"i": i})},
        }
        for i in range(2)
    ]
    out = bedrock.translate_request(
        body(
            messages=[
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": "on it", "tool_calls": calls},
                {"role": "tool", "tool_call_id": "call_0", "content": "zero"},
                {"role": "tool", "tool_call_id": "call_1", "content": ""},
            ],
            tools=[{"type": "function", "function": {"name": "f"}}],
        )
    )
    assert out["messages"][1]["content"] == [
        {"text": "on it"},
        {"toolUse": {"toolUseId": "call_0", "name": "f", "input": {"i": 0}}},
        {"toolUse": {"toolUseId": "call_1", "name": "f", "input": {"i": 1}}},
    ]
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"toolResult": {"toolUseId": "call_0", "content": [{"text": "zero"}]}},
            {"toolResult": {"toolUseId": "call_1", "content": [{"text": ""}]}},
        ],
    }
    # A tool without parameters still gets the object schema Converse requires.
    assert out["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"] == {
        "json": {"type": "object", "properties": {}}
    }
    assert_valid(out, converse_shape)


def test_foreign_tool_call_ids_are_made_valid_and_stay_paired(converse_shape):
    odd = "fc_67.abc/with spaces+and" + "x" * 80
    out = bedrock.translate_request(
        body(
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": odd, "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": odd, "content": "ok"},
            ],
            tools=[{"type": "function", "function": {"name": "f"}}],
        )
    )
    use_id = out["messages"][1]["content"][0]["toolUse"]["toolUseId"]
    result_id = out["messages"][2]["content"][0]["toolResult"]["toolUseId"]
    assert use_id == result_id and len(use_id) <= 64 and " " not in use_id
    assert_valid(out, converse_shape)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        (None, None),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
    ],
)
def test_tool_choice_maps_to_converse(choice, expected):
    out = bedrock.translate_request(
        body(
            tools=[{"type": "function", "function": {"name": "f"}}], tool_choice=choice
        )
    )
    assert out["toolConfig"].get("toolChoice") == expected


def test_tool_choice_none_leaves_the_tools_out():
    out = bedrock.translate_request(
        body(
            tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none"
        )
    )
    assert "toolConfig" not in out


def test_tool_choice_none_with_tool_history_is_refused():
    req = load("tool_result", "request.json")
    req["tool_choice"] = "none"
    with pytest.raises(UnsupportedError) as exc:
        bedrock.translate_request(req)
    assert exc.value.param == "tool_choice"
    assert "bedrock" in exc.value.message


def test_strict_tools_and_json_schema_response_format(converse_shape):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    out = bedrock.translate_request(
        body(
            tools=[
                {
                    "type": "function",
                    "function": {"name": "f", "parameters": schema, "strict": True},
                }
            ],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema},
            },
        )
    )
    assert out["toolConfig"]["tools"][0]["toolSpec"]["strict"] is True
    assert out["outputConfig"] == {
        "textFormat": {
            "type": "json_schema",
            "structure": {
                "jsonSchema": {
                    "schema": '{"type": "object", "properties": {"a": {"type": '
                    '"integer"}}}',
                    "name": "answer",
                }
            },
        }
    }
    assert_valid(out, converse_shape)


def test_documents_audio_and_s3_images(converse_shape):
    pdf = base64.b64encode(b"%PDF-1.4 tiny").decode()
    wav = base64.b64encode(b"RIFF....WAVE").decode()
    out = bedrock.translate_request(
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "file",
                            "file": {
                                "filename": "Q3 report_v2.final.pdf",
                                "file_data": f"data:application/pdf;base64,{pdf}",
                            },
                        },
                        {
                            "type": "input_audio",
                            "input_audio": {"data": wav, "format": "wav"},
                        },
                        {
                            "type": "image_url",
                            "image_url": {"url": "s3://my-bucket/cats/tom.JPG"},
                        },
                    ],
                }
            ]
        )
    )
    assert out["messages"][0]["content"] == [
        {
            "document": {
                "format": "pdf",
                "name": "Q3 report v2 final",
                "source": {"bytes": b"%PDF-1.4 tiny"},
            }
        },
        {"audio": {"format": "wav", "source": {"bytes": b"RIFF....WAVE"}}},
        {
            "image": {
                "format": "jpeg",
                "source": {"s3Location": {"uri": "s3://my-bucket/cats/tom.JPG"}},
            }
        },
    ]
    assert_valid(out, converse_shape)


def test_redacted_thinking_is_sent_back_as_bytes(converse_shape):
    out = bedrock.translate_request(
        body(
            messages=[
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": "a",
                    "thinking_blocks": [
                        {"type": "redacted_thinking", "data": "c2VjcmV0"}
                    ],
                },
                {"role": "user", "content": "q2"},
            ]
        )
    )
    assert out["messages"][1]["content"] == [
        {"reasoningContent": {"redactedContent": b"secret"}},
        {"text": "a"},
    ]
    assert_valid(out, converse_shape)


def test_neutral_values_of_unsupported_parameters_are_accepted():
    out = bedrock.translate_request(
        body(
            n=1,
            logprobs=False,
            presence_penalty=0,
            frequency_penalty=0.0,
            logit_bias={},
            parallel_tool_calls=True,
            store=False,
            response_format={"type": "text"},
            service_tier="auto",
            modalities=["text"],
            reasoning_effort="none",
        )
    )
    assert set(out) == {"modelId", "messages"}


def test_service_tier_and_metadata_are_translated():
    out = bedrock.translate_request(
        body(service_tier="flex", metadata={"team": "search"}, user="u-1")
    )
    assert out["serviceTier"] == {"type": "flex"}
    assert out["requestMetadata"] == {"team": "search", "user": "u-1"}


@pytest.mark.parametrize(
    ("over", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"seed": 7}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"temperature": 1.5}, "temperature"),
        ({"store": True}, "store"),
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
        ({"service_tier": "scale"}, "service_tier"),
        ({"brand_new_param": 1}, "brand_new_param"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        (
            {"model": "meta.llama3-70b-instruct-v1:0", "reasoning_effort": "high"},
            "reasoning_effort",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "https://example.com/cat.png"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/bmp;base64,Qk0="},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "function", "name": "f", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "x": 1}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"tools": [{"type": "code_interpreter"}]},
            "tools[0].type",
        ),
    ],
)
def test_unsupported_parameters_are_refused_by_name(over, param):
    with pytest.raises(UnsupportedError) as exc:
        bedrock.translate_request(body(**over))
    assert exc.value.status == 400
    assert exc.value.param == param
    assert param.split(".")[0].split("[")[0] in exc.value.message
    assert "bedrock" in exc.value.message


@pytest.mark.parametrize(
    ("over", "param"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c1", "function": {"name": "f", "arguments": "[1]"}}
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            {"messages": [{"role": "tool", "content": "orphan"}]},
            "messages[0].tool_call_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,!!!"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        ({"user": "bad\nvalue;drop"}, "user"),
        ({"tool_choice": "required"}, "tool_choice"),
    ],
)
def test_malformed_input_is_a_400_naming_the_field(over, param):
    with pytest.raises(InvalidRequestError) as exc:
        bedrock.translate_request(body(**over))
    assert exc.value.status == 400
    assert exc.value.param == param


def test_reasoning_effort_keeps_a_client_max_tokens():
    out = bedrock.translate_request(body(reasoning_effort="high", max_tokens=30000))
    assert out["inferenceConfig"] == {"maxTokens": 30000}
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 16384}
    }


def test_native_fields_pass_through_and_merge():
    out = bedrock.translate_request(
        body(
            reasoning_effort="low",
            additionalModelRequestFields={"top_k": 5},
            guardrailConfig={"guardrailIdentifier": "gr1", "guardrailVersion": "1"},
        )
    )
    assert out["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "top_k": 5,
    }
    assert out["guardrailConfig"] == {
        "guardrailIdentifier": "gr1",
        "guardrailVersion": "1",
    }


def test_empty_messages_are_dropped_rather_than_sent_blank():
    out = bedrock.translate_request(
        body(
            messages=[
                {"role": "system", "content": ""},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "again"},
            ]
        )
    )
    assert "system" not in out
    assert out["messages"] == [
        {"role": "user", "content": [{"text": "q"}, {"text": "again"}]}
    ]


# -- responses ----------------------------------------------------------------


@pytest.mark.parametrize("case", ANSWERED)
def test_response_fixture_translates_to_openai(case):
    model = load(case, "request.json")["model"]
    out = bedrock.translate_response(
        load(case, "response.json"), model=model, created=1700000000
    )
    assert out["id"].startswith("chatcmpl-")
    assert out["created"] == 1700000000
    assert without_ids(out) == load(case, "expected_response.json")


def test_response_id_comes_from_the_aws_request_id():
    resp = {**load("text", "response.json"), "ResponseMetadata": {"RequestId": "r-1"}}
    out = bedrock.translate_response(resp, model=MODEL, created=0)
    assert out["id"] == "chatcmpl-r-1"


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "stop"),
        ("something_new", "stop"),
        (None, "stop"),
    ],
)
def test_map_stop_reason(reason, finish):
    assert bedrock.map_stop_reason(reason) == finish


def test_map_usage_counts_cache_tokens_as_prompt():
    assert bedrock.map_usage(
        {
            "inputTokens": 15,
            "outputTokens": 353,
            "totalTokens": 1488,
            "cacheReadInputTokens": 0,
            "cacheWriteInputTokens": 1120,
        }
    ) == {
        "prompt_tokens": 1135,
        "completion_tokens": 353,
        "total_tokens": 1488,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1120},
    }


def test_redacted_reasoning_is_echoed_as_base64():
    resp = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {"reasoningContent": {"redactedContent": b"\x00\x01"}},
                    {"text": "ok"},
                ],
            }
        },
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    }
    msg = bedrock.translate_response(resp, model=MODEL, created=0)["choices"][0][
        "message"
    ]
    assert msg["thinking_blocks"] == [{"type": "redacted_thinking", "data": "AAE="}]
    assert msg["reasoning_content"] == ""


# -- streams ------------------------------------------------------------------


def replay(case: str, include_usage: bool = True) -> list[dict[str, Any]]:
    model = load(case, "request.json")["model"]
    tr = bedrock.ChunkTranslator(
        model=model, created=1700000000, id="chatcmpl-x", include_usage=include_usage
    )
    chunks = []
    for event in load(case, "stream.json"):
        chunks += tr.feed(event)
    return chunks


@pytest.mark.parametrize("case", STREAMED)
def test_stream_fixture_replays_to_openai_chunks(case):
    chunks = replay(case)
    assert all(c["id"] == "chatcmpl-x" for c in chunks)
    assert [without_ids(c) for c in chunks] == load(case, "expected_chunks.json")


def test_stream_without_include_usage_has_no_usage_chunk():
    chunks = replay("tool_use", include_usage=False)
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_two_streamed_tool_calls_get_their_own_indexes():
    tr = bedrock.ChunkTranslator(model=MODEL, created=0, id="x", include_usage=False)
    events = [
        {"messageStart": {"role": "assistant"}},
        {
            "contentBlockStart": {
                "start": {"toolUse": {"toolUseId": "t1", "name": "a"}},
                "contentBlockIndex": 0,
            }
        },
        {
            "contentBlockStart": {
                "start": {"toolUse": {"toolUseId": "t2", "name": "b"}},
                "contentBlockIndex": 1,
            }
        },
        {
            "contentBlockDelta": {
                "delta": {"toolUse": {"input": '{"y":2}'}},
                "contentBlockIndex": 1,
            }
        },
        {
            "contentBlockDelta": {
                "delta": {"toolUse": {"input": '{"x":1}'}},
                "contentBlockIndex": 0,
            }
        },
    ]
    chunks = [c for e in events for c in tr.feed(e)]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:]]
    assert [(c["index"], c.get("id")) for c in calls] == [
        (0, "t1"),
        (1, "t2"),
        (1, None),
        (0, None),
    ]
    assert calls[2]["function"]["arguments"] == '{"y":2}'


def test_exception_event_raises_upstream_error():
    tr = bedrock.ChunkTranslator(model=MODEL, created=0, id="x", include_usage=True)
    with pytest.raises(UpstreamError) as exc:
        tr.feed({"throttlingException": {"message": "Too many tokens"}})
    assert exc.value.upstream_status == 429
    assert "Too many tokens" in exc.value.message


# -- properties ---------------------------------------------------------------

_text = st.text(min_size=0, max_size=12)
_ids = st.text(min_size=1, max_size=80)
_names = st.sampled_from(["top_song", "get_weather", "f-1", "x_y"])
_args = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(st.integers(), _text, st.booleans(), st.none()),
    max_size=3,
)
_png = "data:image/png;base64,iVBORw0KGgo="
_part = st.one_of(
    _text.map(lambda t: {"type": "text", "text": t}),
    st.just({"type": "image_url", "image_url": {"url": _png}}),
)
_content = st.one_of(_text, st.lists(_part, max_size=3))
_call = st.builds(
    lambda i, n, a: {
        "id": i,
        "type": "function",
        "function": {"name": n, "arguments": json.dumps(a)},
    },
    _ids,
    _names,
    _args,
)
_message = st.one_of(
    st.builds(lambda c: {"role": "system", "content": c}, _text),
    st.builds(lambda c: {"role": "user", "content": c}, _content),
    st.builds(
        lambda c, calls: {"role": "assistant", "content": c, "tool_calls": calls},
        st.one_of(st.none(), _text),
        st.lists(_call, max_size=2),
    ),
    st.builds(
        lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, _ids, _text
    ),
)


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    messages=st.lists(_message, min_size=1, max_size=8),
    choice=st.sampled_from([None, "auto", "required"]),
    temperature=st.one_of(st.none(), st.floats(0, 1)),
    max_tokens=st.one_of(st.none(), st.integers(1, 8192)),
    stop=st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=4), max_size=3)),
)
def test_any_openai_conversation_becomes_valid_converse_input(
    converse_shape, messages, choice, temperature, max_tokens, stop
):
    req = body(
        messages=messages,
        tools=[TOOL],
        tool_choice=choice,
        temperature=temperature,
        max_tokens=max_tokens,
        stop=stop,
    )
    out = bedrock.translate_request(req)
    assert_valid(out, converse_shape)
    roles = [t["role"] for t in out["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
    assert all(t["content"] for t in out["messages"])
    for turn in out["messages"]:
        for block in turn["content"]:
            assert block.get("text", "x") != ""
    uses = [
        b["toolUse"]["toolUseId"]
        for t in out["messages"]
        for b in t["content"]
        if "toolUse" in b
    ]
    calls = [c for m in messages if m["role"] == "assistant" for c in m["tool_calls"]]
    assert len(uses) == len(calls)
    assert all(TOOL_USE_ID.match(u) for u in uses)
    results = [
        b["toolResult"]["toolUseId"]
        for t in out["messages"]
        for b in t["content"]
        if "toolResult" in b
    ]
    assert all(TOOL_USE_ID.match(r) for r in results)
    # A call and its result, whatever the id, still name the same Converse id.
    tool_msgs = [m for m in messages if m["role"] == "tool"]
    for msg, result in zip(tool_msgs, results, strict=True):
        same = [
            u
            for c, u in zip(calls, uses, strict=True)
            if c["id"] == msg["tool_call_id"]
        ]
        assert all(u == result for u in same)


_block = st.one_of(
    st.text(min_size=1, max_size=30).map(lambda t: {"text": t}),
    st.builds(
        lambda i, n, a: {"toolUse": {"toolUseId": i, "name": n, "input": a}},
        st.from_regex(r"[a-zA-Z0-9_]{1,20}", fullmatch=True),
        _names,
        _args,
    ),
    st.builds(
        lambda t, s: {
            "reasoningContent": {"reasoningText": {"text": t, "signature": s}}
        },
        st.text(min_size=1, max_size=30),
        st.text(min_size=1, max_size=10),
    ),
)


def _assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    content, reasoning, blocks = "", "", []
    calls: dict[int, dict[str, str]] = {}
    finish, usage = None, None
    for c in chunks:
        usage = c.get("usage", usage)
        for ch in c["choices"]:
            d = ch["delta"]
            content += d.get("content") or ""
            reasoning += d.get("reasoning_content") or ""
            blocks += d.get("thinking_blocks") or []
            for tc in d.get("tool_calls") or []:
                slot = calls.setdefault(tc["index"], {"id": "", "name": "", "a": ""})
                slot["id"] = tc.get("id") or slot["id"]
                slot["name"] += tc.get("function", {}).get("name") or ""
                slot["a"] += tc.get("function", {}).get("arguments") or ""
            finish = ch["finish_reason"] or finish
    return {
        "content": content or None,
        "reasoning": reasoning or None,
        "blocks": blocks or None,
        "calls": [
            (calls[i]["id"], calls[i]["name"], json.loads(calls[i]["a"]))
            for i in sorted(calls)
        ],
        "finish": finish,
        "usage": usage,
    }


@settings(max_examples=examples(150), deadline=None)
@given(
    blocks=st.lists(_block, min_size=1, max_size=5),
    reason=st.sampled_from(sorted(bedrock.STOP_REASONS) + ["malformed_tool_use"]),
    piece=st.integers(1, 9),
    cache=st.integers(0, 50),
)
def test_any_answer_streams_to_what_it_answers_whole(blocks, reason, piece, cache):
    resp = fake.response(blocks, stop_reason=reason, cacheReadInputTokens=cache)
    whole = bedrock.translate_response(resp, model=MODEL, created=0)
    msg = whole["choices"][0]["message"]
    tr = bedrock.ChunkTranslator(model=MODEL, created=0, id="x", include_usage=True)
    streamed = _assemble([c for e in fake.events_for(resp, piece) for c in tr.feed(e)])
    assert streamed == {
        "content": msg["content"] or None,
        "reasoning": msg.get("reasoning_content") or None,
        "blocks": msg.get("thinking_blocks"),
        "calls": [
            (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"]))
            for c in msg.get("tool_calls") or []
        ],
        "finish": whole["choices"][0]["finish_reason"],
        "usage": whole["usage"],
    }


@settings(deadline=None)
@given(a=_ids, b=_ids)
def test_tool_use_ids_are_valid_stable_and_distinct(a, b):
    ma, mb = bedrock._tool_use_id(a, "p"), bedrock._tool_use_id(b, "p")
    assert TOOL_USE_ID.match(ma) and TOOL_USE_ID.match(mb)
    assert ma == bedrock._tool_use_id(a, "p")
    assert (ma == mb) == (a == b)


# -- embeddings ---------------------------------------------------------------


def test_titan_embedding_request_is_one_call_per_text():
    calls = bedrock.translate_embedding_request(
        {
            "model": "amazon.titan-embed-text-v2:0",
            "input": ["a", "b"],
            "dimensions": 512,
        }
    )
    assert [json.loads(c["body"]) for c in calls] == [
        {"inputText": "a", "dimensions": 512},
        {"inputText": "b", "dimensions": 512},
    ]
    assert {c["modelId"] for c in calls} == {"amazon.titan-embed-text-v2:0"}
    assert {c["contentType"] for c in calls} == {"application/json"}


def test_cohere_embedding_request_is_batched_by_96():
    texts = [f"t{i}" for i in range(200)]
    calls = bedrock.translate_embedding_request(
        {"model": "cohere.embed-multilingual-v3", "input": texts}
    )
    bodies = [json.loads(c["body"]) for c in calls]
    assert [len(b["texts"]) for b in bodies] == [96, 96, 8]
    assert sum((b["texts"] for b in bodies), []) == texts
    assert {b["input_type"] for b in bodies} == {"search_document"}


@pytest.mark.parametrize(
    ("req", "param"),
    [
        (
            {"model": "amazon.titan-embed-text-v1", "input": "a", "dimensions": 256},
            "dimensions",
        ),
        (
            {"model": "amazon.titan-embed-text-v2:0", "input": "a", "dimensions": 300},
            "dimensions",
        ),
        ({"model": "amazon.titan-embed-text-v2:0", "input": [[1, 2, 3]]}, "input"),
        (
            {"model": "cohere.embed-english-v3", "input": "a", "dimensions": 64},
            "dimensions",
        ),
        ({"model": "cohere.embed-english-v3", "input": "a", "user": "u"}, "user"),
        ({"model": "meta.llama3-8b-instruct-v1:0", "input": "a"}, "model"),
    ],
)
def test_embedding_requests_refuse_by_name(req, param):
    with pytest.raises(InvalidRequestError) as exc:
        bedrock.translate_embedding_request(req)
    assert exc.value.param == param


def test_embedding_response_in_openai_shape_and_base64():
    body = {"model": "m", "encoding_format": "base64"}
    out = bedrock.translate_embedding_response(
        [
            ({"embedding": [1.0, -2.5], "inputTextTokenCount": 3}, None),
            ({"embeddings": {"float": [[0.5, 0.25]]}, "id": "x"}, 4),
        ],
        body,
    )
    assert out["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [d["index"] for d in out["data"]] == [0, 1]
    # float32 little-endian, as OpenAI encodes it
    assert base64.b64decode(out["data"][0]["embedding"]) == bytes.fromhex(
        "0000803f000020c0"
    )


def test_cache_control_becomes_cache_points(converse_shape):
    cached = {"type": "ephemeral"}
    out = bedrock.translate_request(
        body(
            messages=[
                {
                    "role": "system",
                    "content": [
                        {"type": "text", "text": "long rules", "cache_control": cached}
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "big document",
                            "cache_control": {"type": "ephemeral", "ttl": "1h"},
                        },
                        {"type": "text", "text": "question"},
                    ],
                },
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": "c1",
                    "content": [
                        {"type": "text", "text": "result", "cache_control": cached}
                    ],
                },
            ],
            tools=[
                {"type": "function", "function": {"name": "f"}, "cache_control": cached}
            ],
        )
    )
    assert out["system"] == [
        {"text": "long rules"},
        {"cachePoint": {"type": "default"}},
    ]
    assert out["messages"][0]["content"] == [
        {"text": "big document"},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
        {"text": "question"},
    ]
    assert out["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "c1", "content": [{"text": "result"}]}},
        {"cachePoint": {"type": "default"}},
    ]
    assert out["toolConfig"]["tools"][1] == {"cachePoint": {"type": "default"}}
    assert_valid(out, converse_shape)


def test_bad_cache_control_is_a_400_naming_it():
    with pytest.raises(InvalidRequestError) as exc:
        bedrock.translate_request(
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": "x",
                                "cache_control": {"type": "forever"},
                            }
                        ],
                    }
                ]
            )
        )
    assert exc.value.param == "messages[0].content[0].cache_control"


def test_tool_arguments_keep_non_ascii_text():
    resp = {
        "output": {
            "message": {
                "role": "assistant",
                "content": [
                    {
                        "toolUse": {
                            "toolUseId": "t",
                            "name": "f",
                            "input": {"city": "Zürich"},
                        }
                    }
                ],
            }
        },
        "stopReason": "tool_use",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
    }
    out = bedrock.translate_response(resp, model=MODEL, created=0)
    args = out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert args == '{"city": "Zürich"}'
