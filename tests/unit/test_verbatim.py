"""wire/verbatim.py: an upstream's answer keeps its bytes until it is changed."""

from __future__ import annotations

import orjson
import pytest

from crabllm_sync.views import json_response
from crabllm_sync.wire.verbatim import Verbatim, raw_json

RAW = b'{ "id" : "x",\n  "usage": {"total_tokens": 3}, "v": 1e-07 }'


def _answer() -> Verbatim:
    return Verbatim(orjson.loads(RAW), RAW)


def test_an_unchanged_answer_is_sent_as_the_bytes_it_came_in():
    answer = _answer()
    assert answer["usage"]["total_tokens"] == 3  # readable as the parsed object
    assert raw_json(answer) == RAW
    assert json_response(answer).get_data() == RAW


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a.__setitem__("id", "y"),
        lambda a: a.__delitem__("id"),
        lambda a: a.update(id="y"),
        lambda a: a.setdefault("new", 1),
        lambda a: a.pop("id"),
        lambda a: a.popitem(),
        lambda a: a.clear(),
        lambda a: a.__ior__({"id": "y"}),
    ],
)
def test_a_changed_answer_is_serialised_again(change):
    answer = _answer()
    change(answer)
    assert raw_json(answer) is None
    assert orjson.loads(json_response(answer).get_data()) == dict(answer)


def test_setdefault_of_a_present_key_changes_nothing():
    answer = _answer()
    assert answer.setdefault("id", "y") == "x"
    assert raw_json(answer) == RAW


def test_plain_objects_are_serialised():
    assert raw_json({"a": 1}) is None
    assert json_response({"a": 1}).get_data() == b'{"a":1}'
