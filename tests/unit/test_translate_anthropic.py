"""OpenAI <-> Anthropic translation replayed against recorded bodies and streams."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crabllm_sync import sse
from crabllm_sync.errors import InvalidRequestError, UnsupportedError, UpstreamError
from crabllm_sync.providers import anthropic as ant
from crabllm_sync.routing import Deployment
from tests.fakes import anthropic as fake
from tests.fuzzing import examples

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "anthropic"
CREATED = 1700000000
DEP = Deployment(
    provider="claude", kind="anthropic", model="claude-sonnet-4-5", base_url="x"
)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def replay(name: str, include_usage: bool = True) -> list[dict[str, Any]]:
    tr = ant.ChunkTranslator(created=CREATED, include_usage=include_usage)
    lines = (FIXTURES / name).read_bytes().splitlines()
    chunks: list[dict[str, Any]] = []
    for event in sse.parse(lines):
        payload = json.loads(event.data)
        assert payload["type"] == event.event  # the fixture is well formed
        chunks.extend(tr.feed(payload))
    assert tr.done
    return chunks


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a client builds from a stream, the way the openai SDK does."""
    out: dict[str, Any] = {"content": "", "tool_calls": [], "finish_reason": None}
    reasoning, blocks = "", []
    for chunk in chunks:
        if chunk.get("usage"):
            out["usage"] = chunk["usage"]
        for choice in chunk["choices"]:
            delta = choice["delta"]
            out["content"] += delta.get("content") or ""
            reasoning += delta.get("reasoning_content") or ""
            blocks += delta.get("thinking_blocks") or []
            for call in delta.get("tool_calls") or []:
                if call["index"] == len(out["tool_calls"]):
                    out["tool_calls"].append({**call, "function": {**call["function"]}})
                else:
                    fn = out["tool_calls"][call["index"]]["function"]
                    fn["arguments"] += call["function"]["arguments"]
            if choice["finish_reason"]:
                out["finish_reason"] = choice["finish_reason"]
    if reasoning:
        out["reasoning_content"] = reasoning
    if blocks:
        out["thinking_blocks"] = blocks
    return out


# -- requests --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tools", "images", "params"])
def test_request_fixture_translates_to_documented_body(name):
    body = load(f"request_{name}.json")
    assert ant.translate_request(body, DEP) == load(f"expected_request_{name}.json")


def test_max_tokens_defaults_when_the_client_gives_none():
    out = ant.translate_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert out["max_tokens"] == 4096 == ant.DEFAULT_MAX_TOKENS


def test_max_completion_tokens_wins_over_max_tokens():
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 10,
            "max_completion_tokens": 20,
        }
    )
    assert out["max_tokens"] == 20


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, True, None),
    ],
)
def test_tool_choice_and_parallel_tool_calls(choice, parallel, expected):
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "get_weather"}}],
    }
    if choice is not None:
        body["tool_choice"] = choice
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    out = ant.translate_request(body)
    assert out.get("tool_choice") == expected
    assert out["tools"] == [
        {"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_consecutive_tool_results_and_user_text_share_one_user_turn():
    calls = [
        {
            "id": f"toolu_{i}",
            "type": "function",
            "function": {"name": "f", "arguments": "{}"},
        }
        for i in (1, 2)
    ]
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": calls},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "one"},
                {
                    "role": "tool",
                    "tool_call_id": "toolu_2",
                    "content": [{"type": "text", "text": "two"}],
                },
                {"role": "user", "content": "and now?"},
            ],
        }
    )
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "one"},
        {
            "type": "tool_result",
            "tool_use_id": "toolu_2",
            "content": [{"type": "text", "text": "two"}],
        },
        {"type": "text", "text": "and now?"},
    ]


def test_echoed_thinking_blocks_go_back_first_in_the_assistant_turn():
    blocks = load("expected_response_thinking.json")["choices"][0]["message"]
    assistant = {**blocks, "tool_calls": None}
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "q"},
                assistant,
                {"role": "user", "content": "more"},
            ],
        }
    )
    sent = out["messages"][1]["content"]
    assert [b["type"] for b in sent] == ["thinking", "redacted_thinking", "text"]
    assert sent[0]["signature"].startswith("WaUjzkypQ2mUEVM36O2TxuC06KN8")
    assert sent[1]["data"].startswith("EmwKAhgBEgy3va3pzix")


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget", "sent_max"),
    [
        ("low", None, 2048, 2048 + 4096),
        ("high", None, 16384, 16384 + 4096),
        ("medium", 3000, 2999, 3000),
        ("minimal", 20000, 1024, 20000),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget(
    effort, max_tokens, budget, sent_max
):
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "reasoning_effort": effort,
    }
    if max_tokens:
        body["max_completion_tokens"] = max_tokens
    out = ant.translate_request(body)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert out["max_tokens"] == sent_max


def test_reasoning_effort_none_sends_no_thinking():
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "none",
        }
    )
    assert "thinking" not in out


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("seed", 7),
        ("frequency_penalty", 0.5),
        ("presence_penalty", 0.1),
        ("logit_bias", {"50256": -100}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("response_format", {"type": "json_object"}),
        ("reasoning_effort", "extreme"),
        ("service_tier", "flex"),
        ("store", True),
        ("functions", [{"name": "f"}]),
        ("brand_new_param", 1),
    ],
)
def test_parameters_without_an_equivalent_are_refused_by_name(param, value):
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], param: value}
    with pytest.raises(UnsupportedError) as exc:
        ant.translate_request(body, DEP)
    assert exc.value.status == 400
    assert exc.value.param == param
    assert f"'{param}'" in exc.value.message and "'claude'" in exc.value.message


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "user", "content": "x", "name": "bob"}, "messages.0.name"),
        (
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
            "messages.0.content.0",
        ),
        ({"role": "function", "name": "f", "content": "x"}, "messages.0.name"),
    ],
)
def test_message_fields_without_an_equivalent_are_refused(message, param):
    with pytest.raises(UnsupportedError) as exc:
        ant.translate_request({"model": "m", "messages": [message]})
    assert exc.value.param == param


def test_neutral_values_of_unsupported_parameters_are_accepted():
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "n": 1,
            "logprobs": False,
            "presence_penalty": 0,
            "store": False,
            "response_format": {"type": "text"},
            "service_tier": "auto",
        }
    )
    assert "output_config" not in out and out["service_tier"] == "auto"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "t",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{not json"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.tool_calls.0.function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": "ftp://x"}}
                        ],
                    }
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png,abc"},
                            }
                        ],
                    }
                ]
            },
            "messages.0.content.0.image_url.url",
        ),
        (
            {"messages": [{"role": "tool", "content": "x"}]},
            "messages.0.tool_call_id",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": 1.5},
            "temperature",
        ),
        (
            {"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"},
            "tool_choice",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": "high",
                "max_tokens": 500,
            },
            "max_completion_tokens",
        ),
    ],
)
def test_bad_input_is_a_400_naming_the_field(body, param):
    with pytest.raises(InvalidRequestError) as exc:
        ant.translate_request({"model": "m", **body})
    assert exc.value.status == 400
    assert exc.value.param == param


# -- responses -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["text", "tool_use", "thinking"])
def test_response_fixture_translates_to_openai(name):
    out = ant.translate_response(load(f"response_{name}.json"), created=CREATED)
    assert out == load(f"expected_response_{name}.json")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_map_stop_reason(reason, finish):
    assert ant.map_stop_reason(reason) == finish


def test_map_usage_counts_cache_reads_and_writes_as_prompt():
    usage = ant.map_usage(
        {
            "input_tokens": 10,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 1000,
            "output_tokens": 5,
        }
    )
    assert usage["prompt_tokens"] == 1110
    assert usage["total_tokens"] == 1115
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100}
    assert usage["cache_creation_input_tokens"] == 1000


# -- streams ---------------------------------------------------------------------


def test_text_stream_replays_to_expected_chunks():
    assert replay("stream_text.sse") == load("expected_stream_text.json")


def test_usage_chunk_only_when_asked():
    chunks = replay("stream_text.sse", include_usage=False)
    assert all(c["choices"] for c in chunks)
    assert "usage" not in chunks[-1]


def test_tool_use_stream_is_openai_incremental():
    chunks = replay("stream_tool_use.sse")
    expected = load("expected_stream_tool_use.json")
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks[:-1]
        if "tool_calls" in c["choices"][0]["delta"]
    ]
    # First piece: index, id, type and name with empty arguments; then pieces only.
    assert calls[0] == {
        "index": 0,
        "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert all(set(c) == {"index", "function"} for c in calls[1:])
    assert [c["function"]["arguments"] for c in calls[1:]] == expected[
        "argument_pieces"
    ]
    got = assemble(chunks)
    assert got["content"] == expected["content"]
    assert got["tool_calls"] == expected["tool_calls"]
    assert got["finish_reason"] == expected["finish_reason"]
    assert got["usage"] == expected["usage"]


def test_thinking_stream_gives_reasoning_and_signed_blocks():
    got = assemble(replay("stream_thinking.sse"))
    expected = load("expected_stream_thinking.json")
    for key in ("content", "reasoning_content", "thinking_blocks", "finish_reason"):
        assert got[key] == expected[key], key
    assert got["usage"] == expected["usage"]  # that doc example reports no usage


def test_stream_equals_non_stream_for_the_same_message():
    # The documented tool-use stream and the Message it accumulates to.
    native = {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
        "model": "claude-sonnet-4-5-20250929",
        "content": [
            {
                "type": "text",
                "text": "Okay, let's check the weather for San Francisco, CA:",
            },
            {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {"location": "San Francisco, CA", "unit": "fahrenheit"},
            },
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 472, "output_tokens": 89},
    }
    whole = ant.translate_response(native)["choices"][0]
    streamed = assemble(replay("stream_tool_use.sse"))
    assert streamed["content"] == whole["message"]["content"]
    assert [
        {k: v for k, v in c.items() if k != "index"} for c in streamed["tool_calls"]
    ] == whole["message"]["tool_calls"]
    assert streamed["finish_reason"] == whole["finish_reason"]
    assert streamed["usage"] == ant.translate_response(native)["usage"]


def test_error_event_raises_upstream_error_with_its_message():
    tr = ant.ChunkTranslator(provider="claude")
    lines = (FIXTURES / "stream_error.sse").read_bytes().splitlines()
    events = [json.loads(e.data) for e in sse.parse(lines)]
    got = []
    for e in events[:-1]:
        got.extend(tr.feed(e))
    assert got[-1]["choices"][0]["delta"] == {"content": "Hello"}
    with pytest.raises(UpstreamError) as exc:
        tr.feed(events[-1])
    assert exc.value.message == "claude: Overloaded"
    assert exc.value.upstream_status == 529 and exc.value.is_transient


def test_unknown_events_and_blocks_are_skipped():
    tr = ant.ChunkTranslator()
    assert tr.feed({"type": "brand_new_event"}) == []
    assert tr.feed({"type": "ping"}) == []
    assert (
        tr.feed(
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "server_tool_use", "id": "x"},
            }
        )
        == []
    )


def test_message_delta_usage_replaces_start_counts():
    tr = ant.ChunkTranslator(include_usage=True)
    tr.feed(
        {
            "type": "message_start",
            "message": {"id": "m", "model": "c", "usage": {"input_tokens": 3}},
        }
    )
    tr.feed(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {
                "input_tokens": 849,
                "cache_read_input_tokens": 7,
                "output_tokens": 47,
            },
        }
    )
    usage = tr.feed({"type": "message_stop"})[0]["usage"]
    assert usage["prompt_tokens"] == 856 and usage["completion_tokens"] == 47


def test_role_chunk_waits_for_content_so_early_errors_can_be_retried():
    tr = ant.ChunkTranslator()
    lines = (FIXTURES / "stream_text.sse").read_bytes().splitlines()
    events = [json.loads(e.data) for e in sse.parse(lines)]
    assert tr.feed(events[0]) == []  # message_start
    assert tr.feed(events[1]) == []  # empty text block start
    with pytest.raises(UpstreamError):
        tr.feed({"type": "error", "error": {"type": "api_error", "message": "x"}})


def test_small_request_translations():
    out = ant.translate_request(
        {
            "model": "m",
            "stop": "END",
            "user": "u-1",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "text",
                            "text": "read",
                            "cache_control": {"type": "ephemeral"},
                        },
                        {
                            "type": "file",
                            "file": {
                                "file_data": "data:application/pdf;base64,JVBERi0="
                            },
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": "",
                    "thinking_blocks": [
                        {"type": "thinking", "thinking": "t", "signature": "s"}
                    ],
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": ""},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": ""},
            ],
            "tools": [{"type": "function", "function": {"name": "f"}}],
        }
    )
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["messages"][0]["content"] == [
        {"type": "text", "text": "read", "cache_control": {"type": "ephemeral"}},
        {
            "type": "document",
            "source": {
                "type": "base64",
                "media_type": "application/pdf",
                "data": "JVBERi0=",
            },
        },
    ]
    assert out["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "t", "signature": "s"},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1"}
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "system",
                        "content": [{"type": "image_url", "image_url": {"url": "x"}}],
                    }
                ]
            },
            "messages.0.content.0",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "reasoning_effort": "low",
                "thinking": {"type": "enabled", "budget_tokens": 2000},
            },
            "reasoning_effort",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": "x",
                        "thinking_blocks": [{"type": "mystery"}],
                    }
                ]
            },
            "messages.0.thinking_blocks",
        ),
    ],
)
def test_more_bad_input_is_a_400(body, param):
    with pytest.raises(InvalidRequestError) as exc:
        ant.translate_request({"model": "m", **body})
    assert exc.value.param == param


def test_native_thinking_passes_through_with_room_for_the_answer():
    out = ant.translate_request(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "thinking": {"type": "enabled", "budget_tokens": 2000},
            "top_k": 5,
        }
    )
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2000}
    assert out["max_tokens"] == 2000 + 4096
    assert out["top_k"] == 5


def test_non_ascii_tool_arguments_are_not_escaped():
    out = ant.translate_response(
        {
            "content": [
                {
                    "type": "tool_use",
                    "id": "t",
                    "name": "f",
                    "input": {"city": "Zürich"},
                }
            ],
            "stop_reason": "tool_use",
        }
    )
    call = out["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["arguments"] == '{"city": "Zürich"}'
    assert out["choices"][0]["message"]["content"] is None


# -- properties ------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda s: s.strip() == s and " " not in s)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_block = st.one_of(
    st.builds(
        lambda words: {"type": "text", "text": " ".join(words)},
        st.lists(_text, min_size=1, max_size=5),
    ),
    st.builds(
        lambda args, n: {
            "type": "tool_use",
            "id": f"toolu_{n}",
            "name": "f",
            "input": args,
        },
        st.dictionaries(st.text(max_size=8), _json, max_size=4),
        st.integers(0, 10**6),
    ),
    st.builds(
        lambda words, sig: {
            "type": "thinking",
            "thinking": " ".join(words),
            "signature": sig,
        },
        st.lists(_text, min_size=1, max_size=5),
        st.text(alphabet="abcdef0123456789", min_size=1, max_size=20),
    ),
)


@settings(max_examples=examples(60), deadline=None)
@given(
    blocks=st.lists(_block, max_size=5),
    reason=st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence"]),
    counts=st.tuples(*[st.integers(0, 10**6)] * 4),
)
def test_any_streamed_answer_assembles_to_its_non_streamed_translation(
    blocks, reason, counts
):
    answer = fake.Answer(
        blocks,
        stop_reason=reason,
        input_tokens=counts[0],
        output_tokens=counts[1],
        cache_read=counts[2],
        cache_write=counts[3],
    )
    whole = ant.translate_response(fake.message(answer, "claude-x"), created=1)
    tr = ant.ChunkTranslator(created=1, include_usage=True)
    chunks = [c for _, e in fake.events(answer, "claude-x") for c in tr.feed(e)]
    assert tr.done
    assert all(c["id"] == whole["id"] for c in chunks)
    got = assemble(chunks)
    msg = whole["choices"][0]["message"]
    assert got["content"] == (msg["content"] or "")
    assert [
        {k: v for k, v in c.items() if k != "index"} for c in got["tool_calls"]
    ] == msg.get("tool_calls", [])
    assert got.get("reasoning_content") == msg.get("reasoning_content")
    assert got.get("thinking_blocks") == msg.get("thinking_blocks")
    assert got["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert got["usage"] == whole["usage"]


_message = st.one_of(
    st.builds(lambda t: {"role": "user", "content": t}, _text),
    st.builds(
        lambda t: {"role": "user", "content": [{"type": "text", "text": t}]}, _text
    ),
    st.builds(lambda t: {"role": "assistant", "content": t}, _text),
    st.builds(lambda t: {"role": "system", "content": t}, _text),
    st.builds(lambda t: {"role": "developer", "content": t}, _text),
)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(_message, min_size=1, max_size=8))
def test_any_history_becomes_alternating_turns_keeping_every_text(messages):
    out = ant.translate_request({"model": "m", "messages": messages})
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False))

    def texts(content):
        if isinstance(content, str):
            return [content]
        return [b["text"] for b in content]

    def source(m):
        c = m["content"]
        return [c] if isinstance(c, str) else [p["text"] for p in c]

    system = texts(out["system"]) if "system" in out else []
    assert system == [
        t for m in messages if m["role"] in ("system", "developer") for t in source(m)
    ]
    assert [t for m in out["messages"] for t in texts(m["content"])] == [
        t for m in messages if m["role"] in ("user", "assistant") for t in source(m)
    ]


def test_tool_call_without_input_streams_an_empty_object():
    tr = ant.ChunkTranslator()
    tr.feed({"type": "message_start", "message": {"id": "m", "model": "c"}})
    start = {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}
    events = [
        {"type": "content_block_start", "index": 0, "content_block": start},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}},
        {"type": "message_stop"},
    ]
    got = assemble([c for e in events for c in tr.feed(e)])
    assert got["tool_calls"][0]["function"] == {"name": "now", "arguments": "{}"}


def test_tool_input_given_whole_at_block_start_is_not_lost():
    tr = ant.ChunkTranslator()
    tr.feed({"type": "message_start", "message": {"id": "m", "model": "c"}})
    start = {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}
    chunks = tr.feed(
        {"type": "content_block_start", "index": 0, "content_block": start}
    )
    chunks += tr.feed({"type": "content_block_stop", "index": 0})
    assert assemble(chunks)["tool_calls"][0]["function"]["arguments"] == '{"a": 1}'
