"""MultipartBody: what a server parses back, read in any block size."""

from __future__ import annotations

import io
import tempfile

import pytest
from werkzeug.test import create_environ
from werkzeug.wrappers import Request

from crabllm_sync.multipart import MultipartBody, Upload, form_fields


def parse(body: bytes, content_type: str) -> Request:
    return Request(
        create_environ(
            method="POST",
            input_stream=io.BytesIO(body),
            content_type=content_type,
            content_length=len(body),
        )
    )


def read_all(mp: MultipartBody, block: int) -> bytes:
    out = b""
    while True:
        piece = mp.read(block)
        if not piece:
            return out
        assert len(piece) <= block
        out += piece


@pytest.mark.parametrize("block", [1, 7, 8192, 1 << 20])
def test_round_trip_any_block_size(block):
    data = bytes(range(256)) * 40 + b"\r\n--not-a-boundary\r\n"
    stream = tempfile.SpooledTemporaryFile(max_size=100)
    stream.write(data)
    upload = Upload("file", 'we"ird\nname.wav', "audio/wav", stream, len(data))
    fields = form_fields(
        {"model": "whisper-1", "timestamp_granularities[]": ["word", "segment"]}
    )
    mp = MultipartBody(fields, upload, "b0undary")
    body = read_all(mp, block)
    assert len(body) == len(mp)
    req = parse(body, mp.content_type)
    assert req.form["model"] == "whisper-1"
    assert req.form.getlist("timestamp_granularities[]") == ["word", "segment"]
    f = req.files["file"]
    assert f.read() == data
    assert f.mimetype == "audio/wav"
    assert "\n" not in f.filename


def test_a_new_body_rereads_the_file_from_the_start():
    stream = io.BytesIO(b"abc")
    upload = Upload("file", "a", "application/octet-stream", stream, 3)
    first = read_all(MultipartBody([], upload, "x"), 64)
    second = read_all(MultipartBody([], upload, "x"), 64)
    assert first == second and b"abc" in first
