"""SSE framing: parsing upstream lines and encoding our events."""

from __future__ import annotations

from crabllm_sync import sse


def test_parse_groups_data_lines_and_skips_comments():
    lines = [
        b": keep-alive",
        b"",
        b"event: message_start",
        b'data: {"a":1}',
        b"",
        b"data: line1",
        b"data: line2",
        b"",
        b"data:[DONE]",
        b"",
    ]
    events = list(sse.parse(lines))
    assert events == [
        sse.Event('{"a":1}', "message_start"),
        sse.Event("line1\nline2", None),
        sse.Event("[DONE]", None),
    ]


def test_parse_handles_crlf_and_a_final_event_without_blank_line():
    events = list(sse.parse([b"data: x\r", b"\r", b"data: y"]))
    assert [e.data for e in events] == ["x", "y"]


def test_encode_is_one_data_event():
    assert sse.encode({"k": "v"}) == b'data: {"k":"v"}\n\n'
    assert sse.encode_event("ping", {}) == b"event: ping\ndata: {}\n\n"
