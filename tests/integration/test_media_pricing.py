"""Images, speech and transcriptions are priced per image, character and second
(exact nanodollars), never by a text-length estimate, and their units are kept
on the usage row and in GET /v1/usage.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import UsageRecorder
from tests.conftest import make_config, openai_provider
from tests.fakes import openai_media as fake
from tests.upstream import Upstream

ADMIN = "admin-token-for-media"
# A prompt price on every model: a text-length estimate would show up in cost.
PRICING = {
    "gpt-image-1": {
        "cost_per_image": 0.04,
        "prompt_cost_per_million": 5.0,
        "completion_cost_per_million": 40.0,
    },
    "tts-1": {"cost_per_million_characters": 15.0, "prompt_cost_per_million": 1000},
    "whisper-1": {"cost_per_second": 0.0001, "prompt_cost_per_million": 1000},
}


@pytest.fixture
def media() -> Iterator[Upstream]:
    up = fake.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def app(media, app_factory, tmp_path) -> Any:
    config = make_config(
        {
            "providers": {
                "oa": openai_provider(media, ["gpt-image-1", "tts-1", "whisper-1"])
            },
            "storage": {"kind": "sqlite", "path": str(tmp_path / "gw.db")},
            "admin_token": ADMIN,
            "pricing": PRICING,
        }
    )
    return app_factory(config)


@pytest.fixture
def http(app) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://gw")


@pytest.fixture
def sdk(http) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://gw/v1", api_key="sk-none", http_client=http, max_retries=0
    )


def rows(app) -> dict[str, dict[str, Any]]:
    """The usage rows by model (flushed first)."""
    rec = find(app.extensions["crabllm"].extensions, UsageRecorder)
    assert rec is not None
    assert rec.flush()
    U = rec.db.m.UsageRecord
    with rec.db.db.connection_context():
        return {r["model"]: r for r in U.select().dicts()}


def totals(http) -> dict[str, dict[str, Any]]:
    resp = http.get("/v1/usage", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status_code == 200, resp.text
    return {r["model"]: r for r in resp.json()["data"]}


def test_images_are_priced_per_image_plus_their_tokens(sdk, app, http):
    out = sdk.images.generate(model="gpt-image-1", prompt="a cat", n=2)
    assert len(out.data) == 2
    row = rows(app)["gpt-image-1"]
    # 2 x $0.04 + 50 input tokens x $5/M + 50 output tokens x $40/M
    assert row["cost_nanos"] == 80_000_000 + 250_000 + 2_000_000
    assert (row["images"], row["input_tokens"], row["output_tokens"]) == (2, 50, 50)
    assert not row["estimated"]
    t = totals(http)["gpt-image-1"]
    assert (t["images"], t["cost_nanos"]) == (2, 82_250_000)


def test_speech_is_priced_per_input_character_not_estimated(sdk, app, http):
    with sdk.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input="hello world"
    ) as resp:
        audio = resp.read()
    assert audio == b"".join(fake.SPEECH_PIECES)
    row = rows(app)["tts-1"]
    # 11 characters x $15/M; no token estimate (it would add 3 x $1000/M).
    assert row["cost_nanos"] == 165_000
    assert (row["characters"], row["input_tokens"], row["output_tokens"]) == (11, 0, 0)
    assert not row["estimated"]
    t = totals(http)["tts-1"]
    assert (t["characters"], t["cost_nanos"]) == (11, 165_000)


def test_transcription_is_priced_per_second(sdk, app, http):
    text = sdk.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF" + b"\0" * 400, "audio/wav")
    )
    assert text.text == "heard 404 bytes"
    row = rows(app)["whisper-1"]
    # The fake reports 1.5 s: 1.5 x $0.0001.
    assert row["cost_nanos"] == 150_000
    assert (row["audio_ms"], row["input_tokens"]) == (1500, 0)
    assert not row["estimated"]
    assert totals(http)["whisper-1"]["audio_seconds"] == 1.5


def test_a_transcription_without_a_duration_costs_nothing_and_says_so(sdk, app):
    text = sdk.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", b"RIFF" + b"\0" * 10, "audio/wav"),
        response_format="text",
    )
    assert "heard 14 bytes" in text
    row = rows(app)["whisper-1"]
    assert row["cost_nanos"] == 0 and row["audio_ms"] == 0
    assert row["input_tokens"] == 0 and row["output_tokens"] == 0
    assert row["estimated"]
