"""The Responses codec (formats/responses), judged by the openai SDK's own types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from crabllm_sync.errors import InvalidRequestError
from crabllm_sync.formats import responses as fmt
from crabllm_sync.formats.responses.items import decode_reasoning
from crabllm_sync.wire import completions as oai
from crabllm_sync.wire.openai import validate
from crabllm_sync.wire.responses import ResponsesRequest

EVENT = TypeAdapter(ResponseStreamEvent)


def check_response(obj: dict[str, Any]) -> Response:
    return Response.model_validate(obj, strict=False)


def check_events(events: list[dict[str, Any]]) -> list[Any]:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return [EVENT.validate_python(e) for e in events]


def test_string_input_and_instructions_become_system_and_user_messages():
    out = fmt.to_canonical({"model": "m", "input": "hi", "instructions": "be brief"})
    assert out.chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert out.omitted == []


def test_item_list_with_image_function_call_and_output_maps_to_chat_turns():
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AA"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        "max_output_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u",
    }
    chat = fmt.to_canonical(body).chat
    assert chat["messages"] == [
        {"role": "system", "content": "rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "f", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]
    assert chat["max_completion_tokens"] == 50
    assert (chat["temperature"], chat["top_p"], chat["user"]) == (0.2, 0.9, "u")


def test_text_format_json_schema_and_reasoning_effort_map_to_chat_fields():
    body = {
        "model": "m",
        "input": "x",
        "text": {
            "format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}
        },
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    chat = fmt.to_canonical(body).chat
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "o", "schema": {"type": "object"}},
    }
    assert chat["reasoning_effort"] == "low"


def test_codex_request_flattens_namespace_and_names_hosted_tools_omitted():
    body = {
        "model": "m",
        "input": "x",
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "k",
        "client_metadata": {"a": "b"},
        "tools": [
            {"type": "function", "name": "shell", "parameters": {"type": "object"}},
            {
                "type": "namespace",
                "name": "mcp",
                "description": "d",
                "tools": [{"type": "function", "name": "read"}],
            },
            {"type": "web_search"},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
    }
    out = fmt.to_canonical(body)
    names = [t["function"]["name"] for t in out.chat["tools"]]
    assert names == ["shell", "mcp__read"]
    assert out.namespaces == {"mcp__read": ("mcp", "read")}
    assert out.omitted == ["tools.web_search"]
    assert out.chat["tool_choice"] == "auto"
    assert out.chat["parallel_tool_calls"] is False


def test_unknown_part_type_is_a_400_naming_the_field():
    body = {
        "model": "m",
        "input": [{"role": "user", "content": [{"type": "input_audio"}]}],
    }
    with pytest.raises(InvalidRequestError) as exc:
        fmt.to_canonical(body)
    assert exc.value.param == "input[0].content[0].type"


def test_input_file_with_data_is_a_chat_file_part_and_by_id_a_400():
    data = "data:application/pdf;base64,AA"
    pdf = {"type": "input_file", "filename": "a.pdf", "file_data": data}
    body = {"model": "m", "input": [{"role": "user", "content": [pdf]}]}
    part = fmt.to_canonical(body).chat["messages"][0]["content"][0]
    assert part == {"type": "file", "file": {"file_data": data, "filename": "a.pdf"}}
    by_id = {"type": "input_file", "file_id": "file-1"}
    with pytest.raises(InvalidRequestError) as exc:
        fmt.to_canonical(
            {"model": "m", "input": [{"role": "user", "content": [by_id]}]}
        )
    assert exc.value.param == "input[0].content[0].file_data"


def test_answer_with_reasoning_text_and_namespaced_call_is_a_valid_response():
    body = {"model": "claude", "input": "x", "metadata": {"k": "v"}}
    bridged = fmt.to_canonical(body)
    bridged.namespaces["mcp__read"] = ("mcp", "read")
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]
    message = {
        "role": "assistant",
        "content": "hello",
        "reasoning_content": "hmm",
        "thinking_blocks": blocks,
        "tool_calls": [
            {
                "id": "c9",
                "type": "function",
                "function": {"name": "mcp__read", "arguments": "{}"},
            }
        ],
    }
    usage = {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    completion = oai.completion(
        "c", "claude", 1, [oai.choice(message, "tool_calls")], usage
    )
    obj = fmt.from_canonical(completion, body, bridged, "resp_1", 100)
    resp = check_response(obj)
    assert resp.status == "completed"
    assert resp.output_text == "hello"
    kinds = [item.type for item in resp.output]
    assert kinds == ["reasoning", "message", "function_call"]
    assert decode_reasoning(resp.output[0].encrypted_content) == {"blocks": blocks}
    call = resp.output[2]
    assert (call.namespace, call.name, call.call_id) == ("mcp", "read", "c9")
    assert resp.usage.input_tokens_details.cached_tokens == 2
    assert resp.usage.output_tokens_details.reasoning_tokens == 3
    assert resp.metadata == {"k": "v"}


def test_reasoning_item_signature_survives_the_round_trip_into_thinking_blocks():
    blocks = [{"type": "thinking", "thinking": "hmm", "signature": "SIG"}]
    item = fmt.answer.reasoning_item("rs_1", "hmm", blocks)
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "q"},
            item,
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
    }
    messages = fmt.to_canonical(body).chat["messages"]
    assert messages[1]["thinking_blocks"] == blocks
    assert messages[1]["tool_calls"][0]["id"] == "c"


def test_length_finish_is_an_incomplete_response():
    body = {"model": "m", "input": "x"}
    completion = oai.completion(
        "c",
        "m",
        1,
        [oai.choice({"role": "assistant", "content": "cut"}, "length")],
        None,
    )
    resp = check_response(
        fmt.from_canonical(completion, body, fmt.to_canonical(body), "r", 1)
    )
    assert resp.status == "incomplete"
    assert resp.incomplete_details.reason == "max_output_tokens"


def _chunks(*deltas: dict[str, Any], finish: str = "stop") -> list[dict[str, Any]]:
    out = [oai.chunk("c", "m", 1, d, None) for d in deltas]
    out.append(oai.chunk("c", "m", 1, {}, finish))
    out.append(
        oai.usage_chunk(
            "c", "m", 1, {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        )
    )
    return out


def _stream(body: dict[str, Any], chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tr = fmt.EventTranslator(body, fmt.to_canonical(body), "resp_1", 1)
    events = [e for c in chunks for e in tr.feed(c)]
    return events + tr.finish()


def test_text_stream_events_come_in_openai_order_and_validate():
    body = {"model": "m", "input": "x"}
    events = _stream(
        body,
        _chunks(
            {"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}
        ),
    )
    parsed = check_events(events)
    assert [e.type for e in parsed] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = parsed[-1].response
    assert done.output_text == "Hello"
    assert done.usage.total_tokens == 5


def test_reasoning_then_tool_call_stream_validates_and_keeps_the_signature():
    body = {"model": "m", "input": "x"}
    tb = [{"type": "thinking", "thinking": "think", "signature": "S"}]
    call = (
        oai.tool_call_start(0, "c1", "f")
        if hasattr(oai, "tool_call_start")
        else {
            "index": 0,
            "id": "c1",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        }
    )
    events = _stream(
        body,
        _chunks(
            {"reasoning_content": "think"},
            {"thinking_blocks": tb},
            {"tool_calls": [call]},
            {"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]},
            finish="tool_calls",
        ),
    )
    parsed = check_events(events)
    kinds = [e.type for e in parsed]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = parsed[2].item
    assert added.encrypted_content is None  # the signature comes with the done item
    final = parsed[-1].response
    assert decode_reasoning(final.output[0].encrypted_content) == {"blocks": tb}
    assert final.output[1].arguments == '{"a":1}'
    assert parsed[-3].arguments == '{"a":1}'


def test_stream_cut_by_max_tokens_ends_with_response_incomplete():
    body = {"model": "m", "input": "x"}
    events = check_events(_stream(body, _chunks({"content": "a"}, finish="length")))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


def test_stream_failure_after_start_is_response_failed():
    from crabllm_sync.errors import UpstreamError

    body = {"model": "m", "input": "x"}
    tr = fmt.EventTranslator(body, fmt.to_canonical(body), "resp_1", 1)
    events = tr.feed(oai.chunk("c", "m", 1, {"content": "a"}, None))
    events += tr.failed(UpstreamError("boom", provider="p", upstream_status=502))
    parsed = check_events(events)
    assert parsed[-1].type == "response.failed"
    assert parsed[-1].response.error.message == "boom"


GEMINI_CALL_EXTRA = {"google": {"thought_signature": "CALLSIG"}}
GEMINI_TEXT_EXTRA = {"google": {"thought_signature": "TEXTSIG"}}


def _round_trip(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The assistant turn rebuilt from a response's output items."""
    body = {
        "model": "m",
        "input": [
            {"role": "user", "content": "q"},
            *output,
            {"type": "function_call_output", "call_id": "g1", "output": "ok"},
        ],
    }
    return fmt.to_canonical(body).chat["messages"]


def test_gemini_signatures_of_an_answer_come_back_on_their_message_and_call():
    body = {"model": "gemini", "input": "x"}
    call = {
        "id": "g1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": GEMINI_CALL_EXTRA,
    }
    message = {
        "role": "assistant",
        "content": "t",
        "extra_content": GEMINI_TEXT_EXTRA,
        "tool_calls": [call],
    }
    completion = oai.completion("c", "g", 1, [oai.choice(message, "tool_calls")], None)
    resp = fmt.from_canonical(completion, body, fmt.to_canonical(body), "r", 1)
    check_response(resp)
    turn = _round_trip(resp["output"])[1]
    assert turn["extra_content"] == GEMINI_TEXT_EXTRA
    assert turn["tool_calls"][0]["extra_content"] == GEMINI_CALL_EXTRA


def test_gemini_signatures_of_a_stream_come_back_from_a_trailing_reasoning_item():
    body = {"model": "gemini", "input": "x"}
    call = {
        "index": 0,
        "id": "g1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
        "extra_content": GEMINI_CALL_EXTRA,
    }
    events = check_events(
        _stream(
            body,
            _chunks(
                {"content": "t", "extra_content": GEMINI_TEXT_EXTRA},
                {"tool_calls": [call]},
                finish="tool_calls",
            ),
        )
    )
    output = [i.model_dump(exclude_none=True) for i in events[-1].response.output]
    assert [i["type"] for i in output] == ["message", "function_call", "reasoning"]
    turn = _round_trip(output)[1]
    assert turn["extra_content"] == GEMINI_TEXT_EXTRA
    assert turn["tool_calls"][0]["extra_content"] == GEMINI_CALL_EXTRA


PATCH_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}


def test_custom_tool_is_a_function_of_one_string_and_its_call_comes_back_custom():
    body = {"model": "m", "input": "x", "tools": [PATCH_TOOL]}
    bridged = fmt.to_canonical(body)
    fn = bridged.chat["tools"][0]["function"]
    assert fn["name"] == "apply_patch"
    assert fn["parameters"]["required"] == ["input"]
    assert "start: /.+/" in fn["description"]
    call = {
        "id": "c5",
        "type": "function",
        "function": {"name": "apply_patch", "arguments": '{"input": "*** Begin"}'},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    completion = oai.completion("c", "m", 1, [oai.choice(message, "tool_calls")], None)
    resp = check_response(fmt.from_canonical(completion, body, bridged, "r", 1))
    item = resp.output[0]
    assert (item.type, item.call_id, item.input) == (
        "custom_tool_call",
        "c5",
        "*** Begin",
    )
    again = fmt.to_canonical(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "x"},
                item.model_dump(exclude_none=True),
                {"type": "custom_tool_call_output", "call_id": "c5", "output": "done"},
            ],
        }
    ).chat["messages"]
    sent = again[1]["tool_calls"][0]["function"]
    assert json.loads(sent["arguments"]) == {"input": "*** Begin"}
    assert again[2] == {"role": "tool", "tool_call_id": "c5", "content": "done"}


def test_streamed_custom_tool_call_has_its_input_events():
    body = {"model": "m", "input": "x", "tools": [PATCH_TOOL]}
    start = {
        "index": 0,
        "id": "c6",
        "type": "function",
        "function": {"name": "apply_patch", "arguments": ""},
    }
    events = check_events(
        _stream(
            body,
            _chunks(
                {"tool_calls": [start]},
                {"tool_calls": [{"index": 0, "function": {"arguments": '{"input":'}}]},
                {"tool_calls": [{"index": 0, "function": {"arguments": ' "p"}'}}]},
                finish="tool_calls",
            ),
        )
    )
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    assert kinds[-4:] == [
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1].response.output[0].input == "p"


def test_namespaced_custom_tool_maps_back_to_its_namespace():
    ns = {"type": "namespace", "name": "fs", "description": "d", "tools": [PATCH_TOOL]}
    body = {"model": "m", "input": "x", "tools": [ns]}
    bridged = fmt.to_canonical(body)
    assert bridged.chat["tools"][0]["function"]["name"] == "fs__apply_patch"
    call = {
        "id": "c7",
        "type": "function",
        "function": {"name": "fs__apply_patch", "arguments": '{"input": "p"}'},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    completion = oai.completion("c", "m", 1, [oai.choice(message, "tool_calls")], None)
    item = check_response(fmt.from_canonical(completion, body, bridged, "r", 1)).output[
        0
    ]
    assert (item.type, item.namespace, item.name) == (
        "custom_tool_call",
        "fs",
        "apply_patch",
    )


def test_reasoning_summary_asked_for_streams_summary_events_and_validates():
    body = {
        "model": "m",
        "input": "x",
        "reasoning": {"effort": "low", "summary": "auto"},
    }
    events = check_events(
        _stream(body, _chunks({"reasoning_content": "a"}, {"reasoning_content": "b"}))
    )
    kinds = [e.type for e in events]
    assert kinds[2:11] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.done",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    item = events[-1].response.output[0]
    assert item.summary[0].text == "ab" == item.content[0].text


def test_reasoning_without_summary_asked_has_no_summary():
    body = {"model": "m", "input": "x"}
    message = {"role": "assistant", "content": "t", "reasoning_content": "r"}
    completion = oai.completion("c", "m", 1, [oai.choice(message, "stop")], None)
    bridged = fmt.to_canonical(body)
    resp = check_response(fmt.from_canonical(completion, body, bridged, "r", 1))
    assert resp.output[0].summary == []
    asked = {**body, "reasoning": {"summary": "detailed"}}
    resp = check_response(fmt.from_canonical(completion, asked, bridged, "r", 1))
    assert resp.output[0].summary[0].text == "r"


# -- any body: translated, or a 400 naming the field (never a bug) ---------------

_KEYS = st.sampled_from(
    ["type", "name", "tools", "role", "content", "call_id", "output", "input"]
    + ["format", "namespace", "arguments", "encrypted_content", "user_location"]
    + ["text", "image_url", "file_data", "filters", "effort", "summary"]
)
_TYPES = st.sampled_from(
    ["message", "function_call", "function_call_output", "reasoning", "custom"]
    + ["custom_tool_call", "custom_tool_call_output", "namespace", "function"]
    + ["web_search", "item_reference", "input_text", "input_image", "input_file"]
    + ["json_schema", "json_object", "grammar"]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4) | _TYPES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=12,
)
_ITEM = st.dictionaries(_KEYS, _JSON, max_size=5)
_BODY = st.fixed_dictionaries(
    {"model": st.just("m")},
    optional={
        "input": st.text(max_size=3) | st.lists(_ITEM, max_size=3),
        "tools": st.lists(_ITEM, max_size=3),
        "tool_choice": _JSON,
        "text": st.dictionaries(st.just("format"), _JSON, max_size=1),
        "reasoning": st.dictionaries(_KEYS, _JSON, max_size=2),
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(_BODY)
def test_any_body_is_translated_for_every_provider_or_refused_by_name(body):
    from crabllm_sync.providers.anthropic.request import translate_request as to_ant
    from crabllm_sync.providers.google.request import translate_request as to_gem

    try:
        validate(ResponsesRequest, body)
        chat = fmt.to_canonical(body, search=True).chat
        for translate in (to_ant, to_gem):
            try:
                translate(dict(chat))
            except InvalidRequestError:
                pass
    except InvalidRequestError as exc:
        assert exc.param


_DELTA = st.one_of(
    st.fixed_dictionaries({"content": st.text(min_size=1, max_size=4)}),
    st.fixed_dictionaries({"reasoning_content": st.text(min_size=1, max_size=4)}),
    st.just(
        {"thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}]}
    ),
    st.just({"extra_content": {"google": {"thought_signature": "g"}}}),
    st.builds(
        lambda i, piece: {
            "tool_calls": [
                {
                    "index": i,
                    "id": f"c{i}",
                    "type": "function",
                    "function": {"name": f"f{i}", "arguments": piece},
                }
            ]
        },
        st.integers(0, 2),
        st.text(max_size=3),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_DELTA, max_size=8), st.sampled_from(["stop", "length", "tool_calls"]))
def test_any_chunk_sequence_streams_valid_events_in_order(deltas, finish):
    body = {"model": "m", "input": "x", "reasoning": {"summary": "auto"}}
    events = check_events(_stream(body, _chunks(*deltas, finish=finish)))
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    done = [e.output_index for e in events if e.type == "response.output_item.done"]
    assert added == done == list(range(len(events[-1].response.output)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text


def test_arguments_after_their_call_ended_are_logged_not_dropped_silently(caplog):
    body = {"model": "m", "input": "x"}

    def call(i: int, args: str, **head: str) -> dict[str, Any]:
        return {"tool_calls": [{"index": i, "function": {"arguments": args}, **head}]}

    start = {"type": "function"}
    with caplog.at_level("WARNING"):
        events = _stream(
            body,
            _chunks(
                call(0, "{", id="a", **start),
                call(1, "{}", id="b", **start),
                call(0, "}"),
                finish="tool_calls",
            ),
        )
    check_events(events)
    assert "came after its item ended" in caplog.text
    assert "'}'" in caplog.text
