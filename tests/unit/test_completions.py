"""wire/completions: the OpenAI objects every translating provider answers with."""

from __future__ import annotations

import orjson

from crabllm_sync.wire import completions as oai


def test_completion_is_openai_shaped_in_openai_field_order():
    message = {"role": "assistant", "content": "hi"}
    got = oai.completion(
        "chatcmpl-1", "m", 7, [oai.choice(message, "stop")], oai.usage(3, 2)
    )
    # Field order shows in the JSON a client reads: pin it, not just the values.
    assert orjson.dumps(got) == (
        b'{"id":"chatcmpl-1","object":"chat.completion","created":7,"model":"m",'
        b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
        b'"logprobs":null,"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'
    )


def test_chunk_and_usage_chunk():
    assert orjson.dumps(oai.chunk("c", "m", 7, {"content": "x"}, index=2)) == (
        b'{"id":"c","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[{"index":2,"delta":{"content":"x"},"logprobs":null,'
        b'"finish_reason":null}]}'
    )
    assert oai.chunk(None, "m", 0, {}, "length")["choices"][0]["finish_reason"] == (
        "length"
    )
    assert orjson.dumps(oai.usage_chunk("c", "m", 7, None)) == (
        b'{"id":"c","object":"chat.completion.chunk","created":7,"model":"m",'
        b'"choices":[],"usage":null}'
    )


def test_usage_details_only_when_given_and_extras_last():
    assert oai.usage(0, 0) == {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
    }
    got = oai.usage(
        10,
        4,
        prompt_details={"cached_tokens": 6},
        completion_details={"reasoning_tokens": 3},
        cache_read_input_tokens=6,
    )
    assert list(got) == [
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
        "cache_read_input_tokens",
    ]
    assert got["total_tokens"] == 14
    assert got["prompt_tokens_details"] == {"cached_tokens": 6}
    assert got["completion_tokens_details"] == {"reasoning_tokens": 3}


def test_tool_call_shapes_whole_first_delta_and_argument_pieces():
    assert oai.tool_call("call_1", "f", '{"a": 1}') == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": '{"a": 1}'},
    }
    assert oai.tool_call_start(1, "call_1", "f") == {
        "index": 1,
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": ""},
    }
    assert list(oai.tool_call_start(0, "x", "f")) == ["index", "id", "type", "function"]
    assert oai.tool_call_arguments(1, '{"a"') == {
        "index": 1,
        "function": {"arguments": '{"a"'},
    }
