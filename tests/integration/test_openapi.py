"""GET /openapi.json: a valid OpenAPI 3.1 document that real responses satisfy."""

from __future__ import annotations

import io
import json
import re
import wave
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from tests.conftest import make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_oai
from tests.fakes import openai_media as fake_media
from tests.upstream import Upstream

KEY = "sk-openapi-0123456789"

# SPEC.md's endpoint table.
SPEC_ENDPOINTS = {
    ("post", "/v1/chat/completions"),
    ("post", "/v1/embeddings"),
    ("get", "/v1/models"),
    ("post", "/v1/images/generations"),
    ("post", "/v1/audio/speech"),
    ("post", "/v1/audio/transcriptions"),
    ("post", "/v1/messages"),
    ("get", "/v1/usage"),
    ("get", "/v1/budget"),
    ("delete", "/v1/cache"),
    ("post", "/v1/admin/keys"),
    ("get", "/v1/admin/keys"),
    ("get", "/v1/admin/keys/{name}"),
    ("patch", "/v1/admin/keys/{name}"),
    ("delete", "/v1/admin/keys/{name}"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
}


@pytest.fixture
def ups() -> dict[str, Upstream]:
    oai = fake_oai.make_upstream()
    for pattern, handler in fake_media.make_upstream().handlers:
        oai.handlers.append((pattern, handler))
    started = {"oai": oai.start(), "ant": fake_ant.make_upstream().start()}
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture
def env(ups, app_factory, served) -> tuple[str, dict[str, Any], Any]:
    app = app_factory(
        make_config(
            {
                "providers": {
                    "oa": openai_provider(
                        ups["oai"],
                        [
                            "gpt-4o",
                            "text-embedding-3-small",
                            "gpt-image-1",
                            "whisper-1",
                        ],
                    ),
                    "an": {
                        "kind": "anthropic",
                        "base_url": f"{ups['ant'].url}/v1",
                        "api_key": "k",
                        "models": ["claude-x"],
                    },
                },
                "keys": [{"name": "t", "key": KEY, "models": ["*"]}],
            }
        )
    )
    url = served(app)
    doc = httpx.get(f"{url}/openapi.json", timeout=10).json()
    return url, doc, app


def conforms(doc: dict[str, Any], schema: dict[str, Any], instance: Any) -> None:
    """Validate `instance` against a schema of the document (refs resolved in it)."""
    root = {**schema, "components": doc["components"]}
    errors = sorted(Draft202012Validator(root).iter_errors(instance), key=str)
    assert not errors, f"{instance!r} fails: {errors[0].message}"


def response_schema(
    doc: dict[str, Any], method: str, path: str, status: str, ctype: str
) -> dict[str, Any]:
    op = doc["paths"][path][method]
    resp = op["responses"].get(status) or op["responses"]["default"]
    return resp["content"][ctype]


def call(url: str, method: str, path: str, **kw: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", **kw.pop("headers", {})}
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=10, **kw)


def test_document_is_valid_openapi_3_1(env):
    _, doc, _ = env
    assert doc["openapi"].startswith("3.1")
    validate_spec(doc)
    for schema in doc["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)


def test_every_spec_endpoint_is_described(env):
    _, doc, _ = env
    described = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert SPEC_ENDPOINTS <= described


def test_every_served_route_is_described(env):
    _, doc, app = env
    described = {
        (m, re.sub(r"\{[^}]+\}", "{}", p))
        for p, ops in doc["paths"].items()
        for m in ops
    }
    for rule in app.url_map.iter_rules():
        # Static files and the HTML pages (console, /docs) are not API.
        if rule.endpoint == "static" or rule.endpoint.startswith(("console.", "docs.")):
            continue
        path = re.sub(r"<[^>]+>", "{}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method.lower(), path) in described, f"{method} {rule.rule}"


def test_schemas_come_from_the_wire_models(env):
    _, doc, _ = env
    schemas = doc["components"]["schemas"]
    assert "max_tokens" in schemas["AnthropicMessagesRequest"]["required"]
    assert set(schemas["ChatRequest"]["required"]) == {"model", "messages"}
    assert schemas["ErrorResponse"]["required"] == ["error"]
    # The validation helper does reject what the models reject.
    with pytest.raises(AssertionError):
        conforms(doc, {"$ref": "#/components/schemas/ChatCompletion"}, {"id": "x"})
    with pytest.raises(AssertionError):
        conforms(
            doc, {"$ref": "#/components/schemas/AnthropicStreamEvent"}, {"type": "x"}
        )


def _json_cases(url: str) -> list[tuple[str, str, dict[str, Any], int]]:
    chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    msg = {"model": "gpt-4o", "max_tokens": 5, "messages": chat["messages"]}
    return [
        ("post", "/v1/chat/completions", {"json": chat}, 200),
        ("post", "/v1/chat/completions", {"json": {**chat, "model": "nope"}}, 404),
        ("post", "/v1/chat/completions", {"json": {"model": "gpt-4o"}}, 400),
        (
            "post",
            "/v1/embeddings",
            {"json": {"model": "text-embedding-3-small", "input": ["a", "b"]}},
            200,
        ),
        ("get", "/v1/models", {}, 200),
        ("get", "/v1/models/gpt-4o", {}, 200),
        ("get", "/v1/models", {"headers": {"Authorization": "Bearer wrong"}}, 401),
        (
            "post",
            "/v1/images/generations",
            {"json": {"model": "gpt-image-1", "prompt": "cat"}},
            200,
        ),
        ("post", "/v1/messages", {"json": msg}, 200),
        ("post", "/v1/messages", {"json": {**msg, "model": "claude-x"}}, 200),
        ("post", "/v1/messages", {"json": {**msg, "max_tokens": None}}, 400),
        (
            "post",
            "/v1/messages/count_tokens",
            {"json": {"model": "claude-x", "messages": chat["messages"]}},
            200,
        ),
        ("get", "/health", {}, 200),
    ]


def test_real_json_responses_match_the_document(env):
    url, doc, _ = env
    for method, path, kw, status in _json_cases(url):
        resp = call(url, method, path, **kw)
        assert resp.status_code == status, (path, resp.text)
        media = response_schema(
            doc,
            method,
            path.replace("/gpt-4o", "/{model}"),
            str(status),
            "application/json",
        )
        conforms(doc, media["schema"], resp.json())


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x10" * 800)
    return buf.getvalue()


def test_transcription_response_matches(env):
    url, doc, _ = env
    resp = call(
        url,
        "post",
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", _wav(), "audio/wav")},
    )
    assert resp.status_code == 200
    media = response_schema(
        doc, "post", "/v1/audio/transcriptions", "200", "application/json"
    )
    conforms(doc, media["schema"], resp.json())


def _sse_payloads(resp: httpx.Response) -> list[Any]:
    out = []
    for line in resp.iter_lines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: ") :]))
    return out


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/chat/completions",
            {
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "a b"}],
            },
        ),
        (
            "/v1/messages",
            {
                "model": "gpt-4o",
                "stream": True,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "a b"}],
            },
        ),
        (
            "/v1/messages",
            {
                "model": "claude-x",
                "stream": True,
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "a b"}],
            },
        ),
    ],
)
def test_stream_events_match_the_document(env, path, body):
    url, doc, _ = env
    with httpx.stream(
        "POST",
        f"{url}{path}",
        json=body,
        headers={"x-api-key": KEY, "Authorization": f"Bearer {KEY}"},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        payloads = _sse_payloads(resp)
    media = response_schema(doc, "post", path, "200", "text/event-stream")
    assert len(payloads) >= 3
    for payload in payloads:
        conforms(doc, media["x-sse-event"], payload)
