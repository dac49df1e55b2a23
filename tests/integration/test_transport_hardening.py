"""The transport against real local upstreams: read timeouts, per-model and
per-request timeouts, and redirects never followed (credentials stay home).

In-process gateway (httpx over WSGI) in front of werkzeug upstreams.
"""

from __future__ import annotations

import io
import threading
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_config, openai_provider
from tests.fakes import openai as fake
from tests.fakes import openai_media as media_fake
from tests.upstream import Reply, Upstream

HEADER = "x-crabllm-timeout"
USER = {"role": "user", "content": "hello there"}


@pytest.fixture
def ups() -> Iterator[Any]:
    made: list[Upstream] = []

    def make(upstream: Upstream | None = None) -> Upstream:
        up = (upstream or fake.make_upstream()).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


@pytest.fixture
def client_of(app_factory) -> Any:
    def make(providers: dict[str, Any], **top: Any) -> httpx.Client:
        app = app_factory(make_config({"providers": providers, **top}))
        return httpx.Client(
            transport=httpx.WSGITransport(app=app), base_url="http://gw"
        )

    return make


def chat(client: httpx.Client, model: str = "m", **kw: Any) -> httpx.Response:
    body = {"model": model, "messages": [USER]}
    return client.post("/v1/chat/completions", json=body, **kw)


def hanging(up: Upstream) -> threading.Event:
    """Make every chat on `up` hang until the returned event is set."""
    hang = threading.Event()
    up.route(fake.CHAT_PATH, lambda rec: Reply(json={}, hang=hang))
    return hang


# -- a slow answer is not a dead deployment ----------------------------------------


def test_read_timeout_is_504_sent_once_and_not_tried_elsewhere(ups, client_of):
    a, b = ups(), ups()
    hangs = [hanging(a), hanging(b)]
    client = client_of(
        {
            "a": openai_provider(a, ["m"], timeout=0.3, max_retries=2),
            "b": openai_provider(b, ["m"], timeout=0.3, max_retries=2),
        }
    )
    try:
        resp = chat(client)
    finally:
        for hang in hangs:
            hang.set()
    assert resp.status_code == 504
    assert resp.json()["error"]["code"] == "upstream_timeout"
    # One generation started: nothing re-sent (each re-send is billed again).
    assert len(a.requests) + len(b.requests) == 1


def test_read_timeout_does_not_open_the_breaker_for_everyone(ups, client_of):
    a = ups()
    hang = threading.Event()
    a.enqueue(Reply(json={}, hang=hang))
    client = client_of(
        {"a": openai_provider(a, ["m"], timeout=0.3, max_retries=2)},
        routing={"failure_threshold": 1, "cooldown_seconds": 30},
    )
    try:
        assert chat(client).status_code == 504
    finally:
        hang.set()
    # The next request (any key) is served, not refused with 503 cooling.
    resp = chat(client)
    assert resp.status_code == 200, resp.text
    assert len(a.requests) == 2


def test_stream_read_timeout_before_the_first_chunk_is_not_retried(ups, client_of):
    a = ups()
    events = fake.stream_events("m", ["a", "b"])
    # The provider takes the request and stalls (it ends when we hang up).
    a.route(fake.CHAT_PATH, lambda rec: Reply(events=events, pauses={0: 30}))
    client = client_of({"a": openai_provider(a, ["m"], timeout=0.3, max_retries=2)})
    body = {"model": "m", "messages": [USER], "stream": True}
    resp = client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 504
    assert len(a.requests) == 1


# -- longer timeouts per model and per request ----------------------------------------


def test_header_gives_a_long_generation_a_longer_timeout(ups, client_of):
    a = ups()
    a.route(fake.CHAT_PATH, lambda rec: fake_answer(rec, delay=1.0))
    client = client_of({"a": openai_provider(a, ["m"], timeout=0.2)})
    assert chat(client).status_code == 504
    resp = chat(client, headers={HEADER: "30"})
    assert resp.status_code == 200, resp.text


def test_header_extends_the_request_deadline(ups, client_of):
    a = ups()
    a.route(fake.CHAT_PATH, lambda rec: fake_answer(rec, delay=1.0))
    client = client_of(
        {"a": openai_provider(a, ["m"], timeout=0.2)},
        routing={"request_deadline": 0.5},
    )
    resp = chat(client, headers={HEADER: "30"})
    assert resp.status_code == 200, resp.text


def test_header_over_the_configured_maximum_is_400_naming_it(ups, client_of):
    a = ups()
    client = client_of(
        {"a": openai_provider(a, ["m"])}, routing={"max_request_timeout": 120}
    )
    resp = chat(client, headers={HEADER: "121"})
    assert resp.status_code == 400
    err = resp.json()["error"]
    assert err["param"] == HEADER and HEADER in err["message"]
    assert "120" in err["message"]
    assert a.requests == []


def test_model_timeouts_give_one_model_a_longer_timeout(ups, client_of):
    a = ups()
    a.route(fake.CHAT_PATH, lambda rec: fake_answer(rec, delay=1.0))
    client = client_of(
        {
            "a": openai_provider(
                a, ["fast", "slow"], timeout=0.2, model_timeouts={"slow": 30}
            )
        }
    )
    assert chat(client, "fast").status_code == 504
    assert chat(client, "slow").status_code == 200


def fake_answer(rec: Any, delay: float) -> Reply:
    reply = fake.chat_handler(rec)
    reply.delay = delay
    return reply


# -- redirects are never followed ---------------------------------------------------


def make_wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 800)
    return buf.getvalue()


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("endpoint", ["speech", "transcription"])
def test_azure_redirect_to_another_host_is_not_followed(
    ups, client_of, status, endpoint
):
    elsewhere = ups(Upstream())  # another host:port, records what it gets
    home = ups(media_fake.make_upstream())
    moved = Reply(status=status, headers={"Location": f"{elsewhere.url}/steal"})
    home.route(media_fake.SPEECH_PATH, lambda rec: moved)
    home.route(media_fake.TRANSCRIBE_PATH, lambda rec: moved)
    client = client_of(
        {
            "az": {
                "kind": "azure",
                "base_url": home.url,
                "api_key": "az-secret-key-0123456789",
                "models": ["tts-az", "whisper-az"],
                "max_retries": 1,
                "timeout": 5,
            }
        }
    )
    if endpoint == "speech":
        resp = client.post(
            "/v1/audio/speech",
            json={"model": "tts-az", "input": "hi", "voice": "alloy"},
        )
    else:
        resp = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-az"},
            files={"file": ("a.wav", make_wav(), "audio/wav")},
        )
    assert resp.status_code == 502, resp.text
    assert "redirect" in resp.json()["error"]["message"]
    assert len(home.requests) == 1  # a redirect is config, not a blip: no retry
    assert elsewhere.requests == []
