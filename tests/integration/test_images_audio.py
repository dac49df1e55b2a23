"""Images, speech and transcription with the official openai SDK (openai, azure)."""

from __future__ import annotations

import io
import threading
import wave
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai_media as fake
from tests.recording import attach
from tests.upstream import Recorded, Reply, Upstream

KEY = "sk-media-0123456789"


def make_wav(seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A real mono 16-bit PCM WAV file (a square-ish wave)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            sample = 8000 if (i // 20) % 2 else -8000
            frames += sample.to_bytes(2, "little", signed=True)
        w.writeframes(bytes(frames))
    return buf.getvalue()


@pytest.fixture
def media() -> Upstream:
    up = fake.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def ant() -> Upstream:
    up = fake_ant.make_upstream().start()
    yield up
    up.stop()


def _config(media: Upstream, ant: Upstream, **over: Any) -> Any:
    return make_config(
        {
            "providers": {
                "oa": openai_provider(
                    media, ["gpt-image-1", "tts-1", "whisper-1"], max_retries=1
                ),
                "az": {
                    "kind": "azure",
                    "base_url": media.url,
                    "api_key": "az-key",
                    "api_version": "2025-04-01-preview",
                    "models": ["dalle-az", "tts-az", "whisper-az"],
                    "max_retries": 0,
                    "timeout": 5,
                },
                "an": {
                    "kind": "anthropic",
                    "base_url": f"{ant.url}/v1",
                    "api_key": "k",
                    "models": ["claude-x"],
                },
                "local": {"kind": "mock", "models": ["mock"]},
            },
            "keys": [{"name": "team", "key": KEY, "models": ["*"]}],
            **over,
        }
    )


@pytest.fixture
def gw(media, ant, app_factory, served):
    app = app_factory(_config(media, ant))
    recorder = attach(app)
    url = served(app)
    return openai.OpenAI(api_key=KEY, base_url=f"{url}/v1", max_retries=0), recorder


# -- the fake is faithful ----------------------------------------------------


def test_openai_sdk_accepts_the_fake_directly(media):
    sdk = openai.OpenAI(api_key="x", base_url=f"{media.url}/v1", max_retries=0)
    img = sdk.images.generate(model="gpt-image-1", prompt="a cat", n=2)
    assert [d.b64_json for d in img.data] == ["aW1hZ2Ut0", "aW1hZ2Ut1"]
    audio = sdk.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert audio.content == b"".join(fake.SPEECH_PIECES)
    text = sdk.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", make_wav())
    )
    assert text.text.startswith("heard ")


# -- images ------------------------------------------------------------------


def test_images_openai_kind(gw, media):
    sdk, recorder = gw
    out = sdk.images.generate(
        model="gpt-image-1", prompt="a cat", n=2, size="1024x1024"
    )
    assert [d.b64_json for d in out.data] == ["aW1hZ2Ut0", "aW1hZ2Ut1"]
    assert out.data[0].revised_prompt == "a cat"
    sent = media.requests[-1]
    assert sent.path == "/v1/images/generations"
    assert sent.json == {
        "model": "gpt-image-1",
        "prompt": "a cat",
        "n": 2,
        "size": "1024x1024",
    }
    assert sent.headers["authorization"] == "Bearer sk-upstream"
    assert recorder.wait()["usage"] == {
        "images": 2,
        "prompt_tokens": 50,
        "completion_tokens": 50,
        "total_tokens": 100,
    }


def test_images_azure_kind(gw, media):
    sdk, _ = gw
    out = sdk.images.generate(model="dalle-az", prompt="a dog")
    assert len(out.data) == 1
    sent = media.requests[-1]
    assert sent.path == "/openai/deployments/dalle-az/images/generations"
    assert sent.query == {"api-version": "2025-04-01-preview"}
    assert sent.headers["api-key"] == "az-key"
    assert "authorization" not in sent.headers


@pytest.mark.parametrize(("model", "provider"), [("mock", "local"), ("claude-x", "an")])
def test_images_unsupported_endpoint_names_the_provider(gw, model, provider):
    sdk, _ = gw
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.generate(model=model, prompt="x")
    assert exc.value.status_code == 400
    assert exc.value.body == {
        "message": f"provider '{provider}' does not support the images endpoint",
        "type": "invalid_request_error",
        "param": None,
        "code": "unsupported_endpoint",
    }


def test_images_bad_request(gw):
    sdk, _ = gw
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.generate(model="gpt-image-1", prompt="")
    assert exc.value.body["param"] == "prompt"


# -- speech ------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tts-1", "tts-az"])
def test_speech_bytes_equal_what_upstream_sent(gw, media, model):
    sdk, recorder = gw
    audio = sdk.audio.speech.create(model=model, voice="alloy", input="hello world")
    assert audio.content == b"".join(fake.SPEECH_PIECES)
    assert audio.response.headers["content-type"] == "audio/mpeg"
    assert media.requests[-1].json["input"] == "hello world"
    assert recorder.wait()["usage"] == {"characters": len("hello world")}


def test_speech_is_streamed_not_buffered(gw, media):
    sdk, _ = gw
    release = threading.Event()

    def pieces():
        yield b"first-audio-bytes"
        # The upstream holds the rest until the client has seen the first bytes.
        assert release.wait(30), "test never released the upstream"
        yield b"rest-of-the-audio"

    media.enqueue(Reply(chunks=pieces(), content_type="audio/mpeg"))
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hi"
    ) as resp:
        chunks = resp.iter_bytes()
        got = b""
        while len(got) < len(b"first-audio-bytes"):
            got += next(chunks)
        assert not release.is_set()
        assert got == b"first-audio-bytes"
        release.set()
        got += b"".join(chunks)
    assert got == b"first-audio-bytes" + b"rest-of-the-audio"


def test_speech_broken_mid_stream_is_not_a_silent_truncation(gw, media):
    sdk, recorder = gw
    media.enqueue(
        Reply(chunks=iter(fake.SPEECH_PIECES), content_type="audio/mpeg", drop_after=3)
    )
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        with sdk.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="hi"
        ) as resp:
            b"".join(resp.iter_bytes())
    assert "error" in recorder.wait()


def test_speech_unsupported_on_mock(gw):
    sdk, _ = gw
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.audio.speech.create(model="mock", voice="alloy", input="x")
    assert exc.value.body["code"] == "unsupported_endpoint"


# -- transcription and translation -------------------------------------------


def _check_upload(rec: Recorded, wav: bytes, model: str) -> Any:
    form = fake.parse_form(rec)
    assert form.form["model"] == model
    file = form.files["file"]
    assert file.filename == "speech.wav"
    assert file.read() == wav
    # Sent with a length, not chunked: some servers refuse chunked uploads.
    assert int(rec.headers["content-length"]) == len(rec.body)
    return form


def test_transcription_uploads_the_wav(gw, media):
    sdk, recorder = gw
    wav = make_wav()
    out = sdk.audio.transcriptions.create(
        model="whisper-1",
        file=("speech.wav", wav, "audio/wav"),
        language="en",
        timestamp_granularities=["word", "segment"],
        response_format="verbose_json",
    )
    assert out.text == f"heard {len(wav)} bytes"
    rec = media.requests[-1]
    assert rec.path == "/v1/audio/transcriptions"
    form = _check_upload(rec, wav, "whisper-1")
    assert form.form["language"] == "en"
    assert form.form.getlist("timestamp_granularities[]") == ["word", "segment"]
    assert form.files["file"].mimetype == "audio/wav"
    assert recorder.wait()["usage"] == {"seconds": 1.5}


def test_transcription_text_format_passes_through(gw):
    sdk, _ = gw
    out = sdk.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", make_wav()), response_format="text"
    )
    assert isinstance(out, str) and out.startswith("heard ")


def test_translation_and_azure_paths(gw, media):
    sdk, _ = gw
    wav = make_wav(0.1)
    sdk.audio.translations.create(model="whisper-1", file=("speech.wav", wav))
    assert media.requests[-1].path == "/v1/audio/translations"
    sdk.audio.transcriptions.create(model="whisper-az", file=("speech.wav", wav))
    rec = media.requests[-1]
    assert rec.path == "/openai/deployments/whisper-az/audio/transcriptions"
    assert rec.headers["api-key"] == "az-key"
    _check_upload(rec, wav, "whisper-az")


def test_retry_sends_the_whole_file_again(gw, media):
    sdk, _ = gw
    wav = make_wav(2.0)
    media.enqueue(Reply(status=503, json={"error": {"message": "busy"}}))
    out = sdk.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav))
    assert out.text == f"heard {len(wav)} bytes"
    first, second = media.requests[-2:]
    _check_upload(first, wav, "whisper-1")
    _check_upload(second, wav, "whisper-1")


def test_large_upload_spooled_to_disk_is_streamed_whole(gw, media):
    sdk, _ = gw
    wav = make_wav(40.0)  # 640 kB: werkzeug spools it to a temporary file
    out = sdk.audio.transcriptions.create(model="whisper-1", file=("speech.wav", wav))
    assert out.text == f"heard {len(wav)} bytes"
    _check_upload(media.requests[-1], wav, "whisper-1")


def test_upload_over_max_body_size_is_413(media, ant, app_factory, served):
    url = served(app_factory(_config(media, ant, max_body_size=4096)))
    sdk = openai.OpenAI(api_key=KEY, base_url=f"{url}/v1", max_retries=0)
    with pytest.raises(openai.APIStatusError) as exc:
        sdk.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", make_wav(1.0))
        )
    assert exc.value.status_code == 413
    assert exc.value.body["code"] == "request_too_large"
    assert not any("audio" in r.path for r in media.requests)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": {"model": "whisper-1"}}, "'file': is required"),
        ({"json": {"model": "whisper-1"}}, "send multipart/form-data"),
        ({"files": {"file": ("a.wav", b"RIFF")}}, "'model': is required"),
    ],
)
def test_bad_uploads_are_400(gw, kwargs, message):
    sdk, _ = gw
    url = str(sdk.base_url).rstrip("/")
    if "data" in kwargs:  # multipart without a file part
        kwargs = {"files": {"other": ("x", b"x")}, **kwargs}
    resp = httpx.post(
        f"{url}/audio/transcriptions",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
        **kwargs,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["message"].startswith(message)


def test_speech_provider_4xx_is_passed_on(gw, media):
    sdk, _ = gw
    media.enqueue(Reply(status=400, json={"error": {"message": "voice 'x' not found"}}))
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.audio.speech.create(model="tts-1", voice="x", input="hi")
    assert "voice 'x' not found" in exc.value.body["message"]


def test_speech_client_going_away_closes_the_upstream(gw, media):
    sdk, recorder = gw
    pieces = [b"x" * 1024] * 400
    media.enqueue(
        Reply(chunks=iter(pieces), content_type="audio/mpeg", chunk_delay=0.1)
    )  # 40 s if never closed
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hi"
    ) as resp:
        assert next(resp.iter_bytes())
    assert media.streams_closed.wait(15), "upstream stream left open"
    assert recorder.wait()["usage"] == {"characters": 2}
