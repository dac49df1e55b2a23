"""providers/shape.py: a provider's answer of the wrong shape is its 502."""

from __future__ import annotations

import pytest

from crabllm_sync.errors import UpstreamError
from crabllm_sync.providers.shape import read_stream, reading


def test_a_shape_error_becomes_the_providers_502_and_others_pass():
    with pytest.raises(UpstreamError) as info, reading("gemini"):
        len(5)  # type: ignore[arg-type]
    assert info.value.http_status == 502
    assert info.value.provider == "gemini"
    with pytest.raises(RuntimeError), reading("gemini"):
        raise RuntimeError("not a shape error")


def test_a_stream_keeps_what_came_before_the_bad_chunk():
    def chunks():
        yield 1
        yield {}["missing"]

    got = []
    with pytest.raises(UpstreamError):
        for chunk in read_stream(chunks(), "claude"):
            got.append(chunk)
    assert got == [1]
