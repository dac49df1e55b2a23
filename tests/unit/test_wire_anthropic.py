"""Anthropic <-> OpenAI translation for /v1/messages (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crabllm_sync.errors import InvalidRequestError, UnsupportedError
from crabllm_sync.wire import anthropic as wire
from crabllm_sync.wire.openai import ChatRequest, validate
from tests.fuzzing import examples


def req(**over: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **over,
    }


# -- to_chat -----------------------------------------------------------------


def test_system_blocks_join_into_one_system_message():
    out = wire.to_chat(
        req(
            system=[
                {"type": "text", "text": "one", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "two"},
            ]
        )
    )
    assert out["messages"][0] == {"role": "system", "content": "one\n\ntwo"}


def test_stream_asks_for_usage():
    out = wire.to_chat(req(stream=True))
    assert out["stream"] is True
    assert out["stream_options"] == {"include_usage": True}


def test_tool_choice_mapping():
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    cases = {
        "auto": "auto",
        "any": "required",
        "none": "none",
    }
    for kind, expected in cases.items():
        out = wire.to_chat(req(tools=tools, tool_choice={"type": kind}))
        assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out


def test_tool_result_with_error_and_image():
    out = wire.to_chat(
        req(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "no such city"},
                                {
                                    "type": "image",
                                    "source": {"type": "url", "url": "https://x/y.png"},
                                },
                            ],
                        }
                    ],
                }
            ]
        )
    )
    assert out["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: no such city"},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
        },
    ]


def test_assistant_thinking_is_dropped_and_text_kept():
    out = wire.to_chat(
        req(
            messages=[
                {"role": "user", "content": "q"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                        {"type": "text", "text": "answer"},
                    ],
                },
                {"role": "user", "content": "more"},
            ]
        )
    )
    assert out["messages"][1] == {"role": "assistant", "content": "answer"}


def test_document_sources():
    text_doc = {"type": "document", "source": {"type": "text", "data": "plain"}}
    pdf = {
        "type": "document",
        "title": "a.pdf",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
    }
    out = wire.to_chat(req(messages=[{"role": "user", "content": [text_doc, pdf]}]))
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "plain"},
        {
            "type": "file",
            "file": {
                "filename": "a.pdf",
                "file_data": "data:application/pdf;base64,JVBE",
            },
        },
    ]


def test_unknown_tool_choice_is_refused_for_translation():
    validate(wire.MessagesRequest, req(tool_choice={"type": "sometimes"}))
    with pytest.raises(UnsupportedError, match="sometimes"):
        wire.to_chat(req(tool_choice={"type": "sometimes"}))


def test_unknown_block_type_is_refused():
    with pytest.raises(UnsupportedError, match="container_upload"):
        wire.to_chat(
            req(messages=[{"role": "user", "content": [{"type": "container_upload"}]}])
        )


def test_image_without_usable_source_is_invalid():
    with pytest.raises(InvalidRequestError):
        wire.to_chat(
            req(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "file"}}],
                    }
                ]
            )
        )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": []}, "messages"),
        (req(max_tokens=0), "max_tokens"),
        (req(temperature=1.5), "temperature"),
        (req(messages=[{"role": "tool", "content": "x"}]), "messages.0.role"),
        (req(messages=[{"role": "user", "content": [{"text": "x"}]}]), None),
        (req(tool_choice={"name": "f"}), "tool_choice.type"),
    ],
)
def test_request_validation_names_the_field(body, param):
    with pytest.raises(InvalidRequestError) as exc:
        validate(wire.MessagesRequest, body)
    if param:
        assert exc.value.param is not None and exc.value.param.startswith(param)


def test_unknown_fields_pass_validation():
    validate(wire.MessagesRequest, req(brand_new={"x": 1}, service_tier="auto"))


# -- from_chat ---------------------------------------------------------------


def completion(
    message: dict[str, Any], finish: str, usage: dict[str, Any] | None = None
):
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage,
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish, stop):
    out = wire.from_chat(completion({"role": "assistant", "content": "x"}, finish), "m")
    assert out["stop_reason"] == stop


def test_from_chat_reasoning_text_and_tools():
    out = wire.from_chat(
        completion(
            {
                "role": "assistant",
                "reasoning_content": "think",
                "content": "ok",
                "tool_calls": [
                    {"id": "c1", "function": {"name": "f", "arguments": '{"a": 1}'}},
                    {"function": {"name": "g", "arguments": "not json"}},
                ],
            },
            "tool_calls",
            {
                "prompt_tokens": 100,
                "completion_tokens": 9,
                "prompt_tokens_details": {"cached_tokens": 60},
            },
        ),
        "alias",
    )
    assert out["id"] == "msg_chatcmpl-1" and out["model"] == "alias"
    assert out["content"] == [
        {"type": "thinking", "thinking": "think", "signature": ""},
        {"type": "text", "text": "ok"},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}},
        {
            "type": "tool_use",
            "id": "call_1",
            "name": "g",
            "input": {"_raw_arguments": "not json"},
        },
    ]
    assert out["usage"] == {
        "input_tokens": 40,
        "output_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 60,
    }


def test_usage_maps_both_ways():
    anthropic_usage = {
        "input_tokens": 5,
        "output_tokens": 7,
        "cache_creation_input_tokens": 11,
        "cache_read_input_tokens": 13,
    }
    openai_usage = wire.usage_to_openai(anthropic_usage)
    assert openai_usage["prompt_tokens"] == 29 and openai_usage["total_tokens"] == 36
    assert openai_usage["prompt_tokens_details"] == {"cached_tokens": 13}
    assert wire.usage_from_openai(openai_usage) == anthropic_usage


# -- EventTranslator ---------------------------------------------------------


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **kw: Any):
    choices = (
        [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    )
    return {"id": "c", "object": "chat.completion.chunk", "choices": choices, **kw}


def run(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    t = wire.EventTranslator("m")
    events = [e for c in chunks for e in t.feed(c)]
    return events + t.finish()


def test_empty_stream_still_frames_a_message():
    assert [n for n, _ in run([])] == ["message_start", "message_delta", "message_stop"]


def test_thinking_then_text_are_two_blocks():
    events = run(
        [
            chunk({"role": "assistant", "reasoning_content": "a"}),
            chunk({"reasoning_content": "b"}),
            chunk({"content": "x"}),
            chunk({}, "stop"),
            chunk(None, usage={"prompt_tokens": 3, "completion_tokens": 2}),
        ]
    )
    assert events[1][1]["content_block"] == {
        "type": "thinking",
        "thinking": "",
        "signature": "",
    }
    deltas = [(d["index"], d["delta"]) for n, d in events if n == "content_block_delta"]
    assert deltas == [
        (0, {"type": "thinking_delta", "thinking": "a"}),
        (0, {"type": "thinking_delta", "thinking": "b"}),
        (1, {"type": "text_delta", "text": "x"}),
    ]
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1]
    assert events[-2][1]["usage"]["input_tokens"] == 3
    assert events[-2][1]["usage"]["output_tokens"] == 2


def test_whole_tool_call_in_one_chunk_and_parallel_calls():
    events = run(
        [
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "a",
                            "function": {"name": "f", "arguments": "{}"},
                        },
                        {
                            "index": 1,
                            "id": "b",
                            "function": {"name": "g", "arguments": '{"x":'},
                        },
                    ]
                }
            ),
            # A late piece for call 1, then one for call 0 (rare interleaving).
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "1}"}}]}),
            chunk({}, "tool_calls"),
        ]
    )
    starts = [
        (d["index"], d["content_block"]["id"])
        for n, d in events
        if n == "content_block_start"
    ]
    assert starts == [(0, "a"), (1, "b")]
    deltas = [
        (d["index"], d["delta"]["partial_json"])
        for n, d in events
        if n == "content_block_delta"
    ]
    assert deltas == [(0, "{}"), (1, '{"x":'), (1, "1}")]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_other_choices_are_ignored():
    t = wire.EventTranslator("m")
    events = t.feed(
        {"id": "c", "choices": [{"index": 1, "delta": {"content": "other"}}]}
    )
    assert [n for n, _ in events] == ["message_start"]


# -- any valid-looking body translates or is refused with a 400 ----------------

_values = st.one_of(
    st.none(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)
)
_source = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["base64", "url", "text", "file", 3]),
        "media_type": _values,
        "data": _values,
        "url": _values,
    },
)
_block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text", "image", "document", "tool_use", "tool_result", "thinking", "odd"]
        )
    },
    optional={
        "text": _values,
        "source": _source,
        "id": _values,
        "name": _values,
        "input": st.one_of(_values, st.dictionaries(st.text(max_size=3), _values)),
        "tool_use_id": _values,
        "is_error": _values,
        "title": _values,
        "content": st.one_of(
            _values,
            st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "image"])},
                    optional={"text": _values, "source": _source},
                ),
                max_size=2,
            ),
        ),
    },
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]),
        "content": st.one_of(st.text(max_size=5), st.lists(_block, max_size=3)),
    }
)


@settings(max_examples=examples(300), deadline=None)
@given(
    messages=st.lists(_message, min_size=1, max_size=3),
    system=st.one_of(st.none(), st.text(max_size=5), st.lists(_block, max_size=2)),
)
def test_translation_never_crashes(messages, system):
    body = req(messages=messages)
    if system is not None:
        body["system"] = system
    try:
        validate(wire.MessagesRequest, body)
        out = wire.to_chat(body)
    except InvalidRequestError:
        return  # a clear 400 (UnsupportedError is one too)
    validate(ChatRequest, out)
    for msg in out["messages"]:
        content = msg.get("content")
        assert (
            content is None
            or isinstance(content, str)
            or all(isinstance(p.get("text", ""), str) for p in content)
        )


_odd = st.one_of(
    _values,
    st.dictionaries(st.sampled_from(["name", "arguments", "x"]), _values, max_size=2),
)
_call = st.fixed_dictionaries(
    {},
    optional={
        "index": st.one_of(st.integers(0, 2), _values),
        "id": _values,
        "function": _odd,
    },
)
_delta = st.fixed_dictionaries(
    {},
    optional={
        "role": st.just("assistant"),
        "content": _values,
        "reasoning_content": _values,
        "tool_calls": st.one_of(
            _values, st.lists(st.one_of(_call, _values), max_size=2)
        ),
    },
)
_chunk = st.fixed_dictionaries(
    {},
    optional={
        "id": _values,
        "choices": st.one_of(
            _values,
            st.lists(
                st.one_of(
                    _values,
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "index": st.sampled_from([0, 0, 1]),
                            "delta": st.one_of(_delta, _values),
                            "finish_reason": st.one_of(
                                _values, st.sampled_from(["stop", "tool_calls"])
                            ),
                        },
                    ),
                ),
                max_size=2,
            ),
        ),
        "usage": st.one_of(
            _values,
            st.fixed_dictionaries(
                {}, optional={"prompt_tokens": _values, "completion_tokens": _values}
            ),
        ),
    },
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(_chunk, max_size=6))
def test_any_chunk_sequence_gives_a_well_formed_event_stream(chunks):
    events = run(chunks)
    names = [n for n, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    open_blocks: set[int] = set()
    started: list[int] = []
    for name, data in events:
        assert data["type"] == name
        if name == "content_block_start":
            assert not open_blocks, "a block opened before the last one closed"
            open_blocks.add(data["index"])
            started.append(data["index"])
        elif name == "content_block_stop":
            open_blocks.remove(data["index"])
        elif name == "content_block_delta":
            assert data["index"] in started
    assert not open_blocks
    assert started == list(range(len(started)))
    usage = events[-2][1]["usage"]
    assert all(isinstance(v, int) and v >= 0 for v in usage.values())


@settings(max_examples=examples(200), deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": _values,
            "choices": st.one_of(
                _values,
                st.lists(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "message": st.one_of(_values, _delta),
                            "finish_reason": _values,
                        },
                    ),
                    max_size=2,
                ),
            ),
            "usage": _values,
        },
    )
)
def test_any_completion_gives_a_valid_message(resp):
    out = wire.from_chat(resp, "m")
    wire.MessageResponse.model_validate(out)


@pytest.mark.parametrize(
    ("data", "usage"),
    [
        (
            '{"type":"message_start","message":{"usage":{"input_tokens":5,'
            '"cache_read_input_tokens":2,"output_tokens":1}}}',
            {"input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1},
        ),
        ('{"type":"message_delta","usage":{"output_tokens":9}}', {"output_tokens": 9}),
        ('{"type":"message_delta","usage":{"output_tokens":null}}', {}),
        ('{"type":"message_start","message":[]}', {}),
        ("not json", {}),
        ("[1]", {}),
    ],
)
def test_event_usage(data, usage):
    assert wire.event_usage(data) == usage


@pytest.mark.parametrize(
    ("data", "status", "transient"),
    [
        (
            '{"type":"error","error":{"type":"overloaded_error","message":"o"}}',
            529,
            True,
        ),
        ('{"type":"error","error":{"type":"invalid_request_error"}}', 500, True),
        ("garbage", 500, True),
    ],
)
def test_event_error(data, status, transient):
    err = wire.event_error(data, "an")
    assert err.upstream_status == status and err.is_transient is transient
    assert err.message.startswith("an: ")
