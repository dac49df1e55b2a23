"""A provider that repeats its credential in an error never leaks it, on any path.

Every provider kind and endpoint, with retries on (the retry WARNING logs the
provider's text) and realistic key lengths (a 164-character `sk-proj-` key is
longer than the 117 characters an error summary keeps): the answers and the
whole log are searched for any 20-character piece of each credential.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import wave
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import make_config
from tests.fakes import bedrock as bedrock_fake
from tests.upstream import Recorded, Reply, Upstream


def _random(seed: str, n: int) -> str:
    """`n` key-like characters, the same on every run."""
    out = ""
    while len(out) < n:
        seed = hashlib.sha512(seed.encode()).hexdigest()
        out += base64.urlsafe_b64encode(bytes.fromhex(seed)).decode().rstrip("=")
    return out[:n]


OPENAI_KEY = "sk-proj-" + _random("openai", 156)  # 164 characters, as issued
AZURE_KEY = _random("azure", 32)
OLLAMA_KEY = "sk-proj-" + _random("ollama", 156)
ANTHROPIC_KEY = "sk-ant-api03-" + _random("anthropic", 95)
GOOGLE_KEY = "AIzaSyD3xQ9mK2pL7vR4sN8bJ1hF6dC0gY5zAw"
AWS_ACCESS = "AKIAQ3EXAMPLE7SECRET"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = [
    OPENAI_KEY,
    AZURE_KEY,
    OLLAMA_KEY,
    ANTHROPIC_KEY,
    GOOGLE_KEY,
    AWS_ACCESS,
    AWS_SECRET,
]
CREDENTIAL_HEADERS = ("authorization", "api-key", "x-api-key", "x-goog-api-key")
FILLER = "Please check your key and try again; see https://example.invalid/keys. "


def said(rec: Recorded) -> str:
    """A careless provider's words: every credential it was sent, in full."""
    sent = [rec.headers[h] for h in CREDENTIAL_HEADERS if h in rec.headers]
    return f"Incorrect API key provided: {' / '.join(sent)}. {FILLER}"


def openai_echo(rec: Recorded) -> Reply:
    return Reply(status=500, json={"error": {"message": said(rec), "type": "x"}})


def anthropic_echo(rec: Recorded) -> Reply:
    error = {"type": "api_error", "message": said(rec)}
    return Reply(status=500, json={"type": "error", "error": error})


def google_echo(rec: Recorded) -> Reply:
    error = {"code": 500, "message": said(rec), "status": "INTERNAL"}
    return Reply(status=500, json={"error": error})


def bedrock_echo(rec: Recorded) -> Reply:
    # The SigV4 Authorization header names the access key id.
    text = f"{said(rec)} (secret {AWS_SECRET})"
    return bedrock_fake.error_reply(500, "InternalServerException", text)


@pytest.fixture
def echoing() -> Iterator[Callable[[Callable[[Recorded], Reply]], Upstream]]:
    made: list[Upstream] = []

    def make(handler: Callable[[Recorded], Reply]) -> Upstream:
        up = Upstream({r".": handler}).start()
        made.append(up)
        return up

    yield make
    for up in made:
        up.stop()


def wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 800)
    return buf.getvalue()


def common(**over: Any) -> dict[str, Any]:
    return {"max_retries": 1, "timeout": 5, **over}


def test_no_provider_credential_leaks_on_any_path_with_retries(
    echoing, app_factory, caplog
):
    oa, az, ol = echoing(openai_echo), echoing(openai_echo), echoing(openai_echo)
    an, gg, br = echoing(anthropic_echo), echoing(google_echo), echoing(bedrock_echo)
    config = make_config(
        {
            "providers": {
                "oa": common(
                    kind="openai",
                    base_url=f"{oa.url}/v1",
                    api_key=OPENAI_KEY,
                    models=["gpt", "emb", "img", "tts", "whisper"],
                ),
                "az": common(
                    kind="azure",
                    base_url=az.url,
                    api_key=AZURE_KEY,
                    models=["az-gpt", "az-emb", "az-img", "az-tts", "az-whisper"],
                ),
                "ol": common(
                    kind="ollama",
                    base_url=f"{ol.url}/v1",
                    api_key=OLLAMA_KEY,
                    models=["llama", "ol-emb"],
                ),
                "an": common(
                    kind="anthropic",
                    base_url=f"{an.url}/v1",
                    api_key=ANTHROPIC_KEY,
                    models=["claude"],
                ),
                "gg": common(
                    kind="google",
                    base_url=f"{gg.url}/v1beta",
                    api_key=GOOGLE_KEY,
                    models=["gemini", "gg-emb"],
                ),
                "br": common(
                    kind="bedrock",
                    base_url=br.url,
                    region="us-east-1",
                    access_key=AWS_ACCESS,
                    secret_key=AWS_SECRET,
                    models=["titan", "amazon.titan-embed-text-v2:0"],
                ),
            },
            # Every call must reach its provider: no breaker in the way.
            "routing": {"failure_threshold": 1000},
        }
    )
    client = httpx.Client(
        transport=httpx.WSGITransport(app=app_factory(config)),
        base_url="http://gw",
        headers={"anthropic-version": "2023-06-01"},
    )
    messages = [{"role": "user", "content": "hi"}]
    native = {"model": "claude", "max_tokens": 5, "messages": messages}
    calls: list[tuple[str, dict[str, Any]]] = []
    for model in ["gpt", "az-gpt", "llama", "claude", "gemini", "titan"]:
        for stream in (False, True):
            body = {"model": model, "messages": messages, "stream": stream}
            calls.append(("/v1/chat/completions", {"json": body}))
    for model in ["emb", "az-emb", "ol-emb", "gg-emb", "amazon.titan-embed-text-v2:0"]:
        calls.append(("/v1/embeddings", {"json": {"model": model, "input": "hi"}}))
    for model in ["img", "az-img"]:
        body = {"model": model, "prompt": "a cat"}
        calls.append(("/v1/images/generations", {"json": body}))
    for model in ["tts", "az-tts"]:
        body = {"model": model, "input": "hi", "voice": "alloy"}
        calls.append(("/v1/audio/speech", {"json": body}))
    for model in ["whisper", "az-whisper"]:
        upload = {"file": ("a.wav", wav(), "audio/wav")}
        form = {"data": {"model": model}, "files": upload}
        calls.append(("/v1/audio/transcriptions", form))
    calls.append(("/v1/messages", {"json": native}))
    calls.append(("/v1/messages", {"json": {**native, "stream": True}}))
    calls.append(("/v1/messages/count_tokens", {"json": native}))

    seen: list[str] = []
    # Everything the gateway logs; libraries at INFO (botocore's DEBUG dumps
    # whole HTTP exchanges, which no deployment should run with).
    caplog.set_level(logging.INFO)
    with caplog.at_level(logging.DEBUG, logger="crabllm_sync"):
        for path, kw in calls:
            resp = client.post(path, **kw)
            assert resp.status_code >= 500, (path, kw, resp.text)
            seen.append(f"{path} {kw.get('json')}: {resp.headers} {resp.text}")
    # Every path really reached its provider, twice (retries on), with the key.
    for up in (oa, az, ol, an, gg, br):
        assert len(up.requests) >= 4
    assert any(OPENAI_KEY in r.headers.get("authorization", "") for r in oa.requests)
    assert "retrying" in caplog.text  # the retry WARNING was captured
    text = "\n".join(seen) + "\n" + caplog.text
    leaks = []
    for secret in SECRETS:
        found = [p for p in pieces(secret) if p in text]
        if found:
            at = text.find(found[0])
            leaks.append(f"{secret[:12]}...: {text[max(0, at - 80) : at + 120]!r}")
    assert not leaks, "\n".join(leaks)
    assert "[redacted]" in text


def pieces(secret: str, size: int = 20) -> list[str]:
    """Every `size`-character window of `secret` (the whole of a short one)."""
    if len(secret) <= size:
        return [secret]
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]
