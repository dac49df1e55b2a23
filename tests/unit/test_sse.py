"""SSE framing: parsing upstream lines and encoding our events."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

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


def _reference_parse(lines):
    """The SSE rules read line by line as text (the WHATWG event-stream
    interpretation, as far as the gateway uses it): the oracle for parse()."""
    data, event = [], None
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                yield sse.Event("\n".join(data), event)
            data, event = [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
    if data:
        yield sse.Event("\n".join(data), event)


_PIECES = [
    b"data:",
    b"data: ",
    b"data",
    b"event: ",
    b"event:",
    b": ",
    b":",
    b"id: 1",
    b"retry: 5",
    b" ",
    b"\r",
    b"x",
    b'{"a": 1}',
    b"[DONE]",
    "é".encode(),
    "é".encode()[:1],
    b"\xff",
]


@given(
    st.lists(st.lists(st.sampled_from(_PIECES), max_size=4).map(b"".join), max_size=12)
)
def test_parse_agrees_with_a_line_by_line_reading_of_the_rules(lines):
    assert list(sse.parse(lines)) == list(_reference_parse(lines))


def test_parse_accepts_text_lines_too():
    assert list(sse.parse(["data: é", ""])) == [sse.Event("é", None)]
