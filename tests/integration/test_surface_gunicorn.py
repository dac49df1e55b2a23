"""/v1/messages, speech and transcription under gunicorn's gevent worker."""

from __future__ import annotations

import io
import threading
import wave

import anthropic
import openai
import pytest

from tests.conftest import write_toml
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.fakes import openai_media as fake_media
from tests.upstream import Reply

KEY = "sk-gunicorn-0123456789"


@pytest.fixture
def ups():
    oai = fake_oai.make_upstream()
    for pattern, handler in fake_media.make_upstream().handlers:
        oai.handlers.append((pattern, handler))
    oai.start()
    ant = fake_ant.make_upstream().start()
    yield oai, ant
    oai.stop()
    ant.stop()


def test_messages_and_audio_under_gevent(ups, gunicorn, tmp_path):
    oai, ant = ups
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[providers.oa]
kind = "openai"
base_url = "{oai.url}/v1"
api_key = "sk-up"
models = ["gpt-4o", "tts-1", "whisper-1"]
max_retries = 0

[providers.an]
kind = "anthropic"
base_url = "{ant.url}/v1"
api_key = "sk-ant"
models = ["claude-x"]

[[keys]]
name = "team"
key = "{KEY}"
models = ["*"]
""",
    )
    srv = gunicorn(config, workers=1)
    sdk = anthropic.Anthropic(base_url=srv.url, api_key=KEY, max_retries=0)
    for model, expected in (("gpt-4o", "echo:abc"), ("claude-x", "echo: a b c")):
        with sdk.messages.stream(
            model=model,
            max_tokens=20,
            messages=[{"role": "user", "content": "a b c"}],
        ) as stream:
            assert "".join(stream.text_stream) == expected
            assert stream.get_final_message().stop_reason == "end_turn"

    client = openai.OpenAI(api_key=KEY, base_url=f"{srv.url}/v1", max_retries=0)
    release = threading.Event()

    def pieces():
        yield b"head"
        assert release.wait(30)
        yield b"tail"

    oai.enqueue(Reply(chunks=pieces(), content_type="audio/mpeg"))
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hi"
    ) as resp:
        chunks = resp.iter_bytes()
        got = b""
        while len(got) < 4:
            got += next(chunks)
        assert got == b"head" and not release.is_set()
        release.set()
        assert b"".join(chunks) == b"tail"

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x01\x02" * 40000)  # 80 kB of audio
    wav = buf.getvalue()
    out = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav))
    assert out.text == f"heard {len(wav)} bytes"
    client.close()
    sdk.close()
