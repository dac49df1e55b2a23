"""Hostile input at every endpoint: always a 4xx in the right JSON shape, never a 500.

Property-based (hypothesis) over raw bytes, arbitrary JSON, wrong types, deep
nesting, invalid UTF-8, bogus content types, multipart abuse, admin bodies and
key names in the path; /v1/messages* answer Anthropic's error shape, the rest
OpenAI's. Real fake upstreams stand behind the gateway so a body that passes
validation goes all the way; the app still answers a normal request afterwards.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_config, openai_provider
from tests.fakes import anthropic as fake_ant
from tests.fakes import openai as fake_openai
from tests.fakes import openai_media as fake_media
from tests.fuzzing import examples
from tests.upstream import Upstream

MAX_BODY = 64 * 1024
SECRET = "sk-hostile-test"
# The fuzzed admin calls must never find (and revoke) the key the tests use.
KEY_NAME = "hostile-config-key-not-for-fuzzing"
ADMIN_TOKEN = "admin-hostile-" + "a" * 32
KEY = {"Authorization": f"Bearer {SECRET}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MODELS = ["mock", "gpt-4o", "text-embedding-3-small", "gpt-image-1", "tts-1"]

JSON_POSTS = [
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/images/generations",
    "/v1/audio/speech",
    "/v1/messages",
    "/v1/messages/count_tokens",
]
UPLOADS = ["/v1/audio/transcriptions", "/v1/audio/translations"]
ADMIN_BODIES = [("POST", "/v1/admin/keys"), ("PATCH", "/v1/admin/keys/fuzz-key")]
# Every (method, path) the gateway serves, with the credentials it wants.
ROUTES: list[tuple[str, str, dict[str, str]]] = [
    *[("POST", p, KEY) for p in JSON_POSTS + UPLOADS],
    ("GET", "/v1/models", KEY),
    ("GET", "/v1/models/mock", KEY),
    ("GET", "/v1/usage", KEY),
    ("GET", "/v1/budget", KEY),
    ("DELETE", "/v1/cache", ADMIN),
    ("GET", "/v1/admin/keys", ADMIN),
    ("POST", "/v1/admin/keys", ADMIN),
    ("GET", "/v1/admin/keys/fuzz-key", ADMIN),
    ("PATCH", "/v1/admin/keys/fuzz-key", ADMIN),
    ("DELETE", "/v1/admin/keys/fuzz-key", ADMIN),
    ("GET", "/health", {}),
    ("GET", "/metrics", ADMIN),
    ("GET", "/openapi.json", {}),
]
BODY_ROUTES = [r for r in ROUTES if r[0] in ("POST", "PATCH")]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)
plausible_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "assistant", "system"]) | field_values},
        optional={"content": st.text(max_size=20) | field_values},
    ),
    max_size=3,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "model": field_values | st.sampled_from(MODELS + ["claude-x", "nope"]),
        "messages": field_values | plausible_messages,
        "input": field_values | st.text(max_size=20),
        "prompt": field_values | st.text(max_size=20),
        "voice": field_values | st.just("alloy"),
        "system": field_values,
        "stream": field_values,
        "temperature": field_values,
        "max_tokens": field_values | st.integers(1, 50),
        "tools": field_values,
        "n": field_values,
        "size": field_values,
        "response_format": field_values,
        "encoding_format": field_values,
        "dimensions": field_values,
    },
)
admin_like = st.fixed_dictionaries(
    {},
    optional={
        "name": field_values | st.text(max_size=80),
        "models": field_values | st.lists(st.text(max_size=30), max_size=4),
        "budget": field_values | st.floats(),
        "rate_limit": field_values
        | st.fixed_dictionaries(
            {}, optional={"requests_per_minute": field_values | st.integers()}
        ),
        "expires_at": field_values,
        "metadata": field_values,
        "key": field_values,
        "disabled": field_values,
    },
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    oa = fake_openai.make_upstream()
    for pattern, handler in (
        (fake_media.IMAGES_PATH, fake_media.images_handler),
        (fake_media.SPEECH_PATH, fake_media.speech_handler),
        (fake_media.TRANSCRIBE_PATH, fake_media.transcribe_handler),
    ):
        oa.route(pattern, handler)
    ant = fake_ant.make_upstream()
    oa.start()
    ant.start()
    yield oa, ant
    oa.stop()
    ant.stop()


@pytest.fixture(scope="module")
def client(upstreams, tmp_path_factory):
    from crabllm_sync.app import create_app

    oa, ant = upstreams
    tmp = tmp_path_factory.mktemp("hostile")
    config = make_config(
        {
            "max_body_size": MAX_BODY,
            "admin_token": ADMIN_TOKEN,
            "providers": {
                "m": {"kind": "mock", "models": ["mock"]},
                "oa": openai_provider(oa, MODELS[1:] + ["whisper-1"]),
                "an": {
                    "kind": "anthropic",
                    "base_url": f"{ant.url}/v1",
                    "api_key": "k",
                    "models": ["claude-x"],
                    "max_retries": 0,
                    "timeout": 5,
                },
            },
            "keys": [{"name": KEY_NAME, "key": SECRET}],
            # Priced: a budgeted key is refused a model without a price.
            "pricing": {
                "claude-x": {"prompt_cost_per_million": 3.0},
                "gpt-image-1": {"cost_per_image": 0.04},
            },
            "extensions": {
                "usage": {"flush_interval": 60},
                "budget": {"default_budget": 1000.0},
                "cache": {},
            },
            "storage": {"kind": "sqlite", "path": str(tmp / "gw.db")},
        }
    )
    app = create_app(config)
    yield app.test_client()
    app.extensions["crabllm"].close()


def check(resp, path: str) -> None:
    """Below 500; an error is JSON in the shape the endpoint's clients expect."""
    assert resp.status_code < 500, (resp.status_code, resp.data[:300])
    if resp.status_code < 400:
        return
    assert resp.mimetype == "application/json", resp.data[:200]
    body = json.loads(resp.data)
    if path.startswith("/v1/messages"):
        assert body["type"] == "error", body
        assert set(body["error"]) == {"type", "message"}, body
        assert isinstance(body["error"]["message"], str)
    else:
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body


TRIED: Counter[str] = Counter()  # inputs per endpoint, for RELIABILITY.md


def send(client, method: str, path: str, headers: dict[str, str], **kw: Any):
    resp = client.open(path, method=method, headers=headers, **kw)
    check(resp, path)
    route = "/v1/admin/keys/{name}" if path.startswith("/v1/admin/keys/") else path
    TRIED[f"{method} {route.split('?')[0]}"] += 1
    if resp.status_code == 200 and resp.mimetype == "text/event-stream":
        data = resp.get_data()
        assert data.endswith(b"data: [DONE]\n\n") or b"message_stop" in data, data
    return resp


FUZZ = settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


PER_ROUTE = settings(FUZZ, max_examples=examples(40))
each_body_route = pytest.mark.parametrize(
    "route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}"
)


@each_body_route
@PER_ROUTE
@given(body=st.binary(max_size=300))
def test_random_bytes(client, route, body):
    method, path, auth = route
    send(client, method, path, auth, data=body)


@each_body_route
@PER_ROUTE
@given(body=json_values)
def test_arbitrary_json(client, route, body):
    method, path, auth = route
    send(client, method, path, auth, data=json.dumps(body))


@settings(FUZZ, max_examples=examples(200))
@given(path=st.sampled_from(JSON_POSTS), body=request_like)
def test_plausible_bodies_with_wrong_types(client, path, body):
    send(client, "POST", path, KEY, data=json.dumps(body))


@FUZZ
@given(route=st.sampled_from(ADMIN_BODIES), body=admin_like)
def test_admin_bodies(client, route, body):
    method, path = route
    send(client, method, path, ADMIN, data=json.dumps(body))


@each_body_route
@PER_ROUTE
@given(
    ctype=st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    body=st.binary(max_size=100),
)
def test_bogus_content_types(client, route, ctype, body):
    method, path, auth = route
    send(client, method, path, {**auth, "Content-Type": ctype}, data=body)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
@PER_ROUTE
@given(
    auth=st.sampled_from(["", "Bearer", "Bearer ", "Basic xx", "bearer  x y"])
    | header_text,
    api_key=st.none() | header_text,
    query=st.dictionaries(
        st.sampled_from(["key", "model", "from", "to", "detail", "x"]),
        st.text(max_size=30),
        max_size=3,
    ),
)
def test_credentials_and_query_junk(client, route, auth, api_key, query):
    method, path, _ = route
    headers = {"Authorization": auth}
    if api_key is not None:
        headers["x-api-key"] = api_key
    send(client, method, path, headers, query_string=query)


ALL_PATHS = sorted({path for _, path, _ in ROUTES} | {"/v1/messages/nope", "/v1/nope"})


@pytest.mark.parametrize("path", ALL_PATHS)
def test_every_method_on_every_path(client, path):
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        resp = send(client, method, path, ADMIN if "admin" in path else KEY, data=b"{")
        if path.startswith("/v1/messages") and resp.status_code >= 400:
            assert resp.get_json()["error"]["type"] != "api_error", resp.data


# -- multipart abuse on the audio uploads ----------------------------------------

form_names = st.sampled_from(
    [
        "file",
        "model",
        "language",
        "prompt",
        "response_format",
        "temperature",
        "timestamp_granularities[]",
        "x",
    ]
) | st.text(max_size=10)
part_values = st.binary(max_size=60) | st.sampled_from(
    [b"whisper-1", b"json", b"text", b"verbose_json", b"0.3", b"-1", b"nan", b""]
)


@st.composite
def multipart_bodies(draw) -> tuple[str, bytes]:
    """A multipart body (sometimes malformed) and the Content-Type sent with it."""
    boundary = draw(
        st.sampled_from(["b0undary", "x" * 70, "a b", ""])
        | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=80)
    )
    raw = b""
    for _ in range(draw(st.integers(0, 4))):
        name = draw(form_names).replace('"', "").replace("\r", "").replace("\n", "")
        disp = f'form-data; name="{name}"'
        if draw(st.booleans()):
            disp += f'; filename="{draw(st.text(max_size=20))}"'
        head = f"Content-Disposition: {disp}\r\n"
        if draw(st.booleans()):
            head += f"Content-Type: {draw(header_text)}\r\n"
        raw += (
            f"--{boundary}\r\n".encode()
            + head.encode("utf-8", "surrogatepass")
            + b"\r\n"
            + draw(part_values)
            + b"\r\n"
        )
    ending = draw(st.sampled_from([f"--{boundary}--\r\n", "", "--", f"--{boundary}"]))
    raw += ending.encode()
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=40)) + raw  # garbage before the first part
    ctype = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/mixed; boundary=b0undary",
            ]
        )
    )
    return ctype, raw


@settings(FUZZ, max_examples=examples(200))
@given(path=st.sampled_from(UPLOADS), form=multipart_bodies())
def test_multipart_abuse(client, path, form):
    ctype, raw = form
    send(client, "POST", path, {**KEY, "Content-Type": ctype}, data=raw)


@FUZZ
@given(
    path=st.sampled_from(UPLOADS),
    fields=st.dictionaries(
        st.sampled_from(
            [
                "model",
                "language",
                "prompt",
                "response_format",
                "temperature",
                "timestamp_granularities[]",
            ]
        ),
        st.text(max_size=20) | st.lists(st.text(max_size=5), max_size=3),
        max_size=5,
    ),
    with_file=st.booleans(),
    filename=st.text(max_size=30),
)
def test_upload_fields_with_wrong_types(client, path, fields, with_file, filename):
    data: dict[str, Any] = dict(fields)
    if with_file:
        data["file"] = (io.BytesIO(b"RIFF0000WAVE"), filename)
    send(client, "POST", path, KEY, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("path", UPLOADS)
def test_upload_over_the_limit_is_413(client, path):
    big = io.BytesIO(b"\0" * (MAX_BODY * 4))
    resp = send(
        client,
        "POST",
        path,
        KEY,
        data={"model": "whisper-1", "file": (big, "a.wav")},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "request_too_large"


def test_upload_without_a_file_names_the_field(client):
    resp = send(
        client,
        "POST",
        "/v1/audio/transcriptions",
        KEY,
        data={"model": "whisper-1"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"]["param"] == "file"


@pytest.mark.parametrize("path", JSON_POSTS + UPLOADS)
def test_multipart_to_a_json_endpoint_and_json_to_an_upload(client, path):
    resp = send(
        client,
        "POST",
        path,
        KEY,
        data={"file": (io.BytesIO(b"abc"), "a.wav"), "model": "mock"},
        content_type="multipart/form-data",
    )
    assert resp.status_code == 400 or path in UPLOADS
    resp = send(client, "POST", path, KEY, json={"model": "whisper-1"})
    assert resp.status_code == 400


# -- nesting, encodings, size ------------------------------------------------------


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_deep_nesting_and_invalid_utf8(client, route):
    method, path, auth = route
    deep = b'{"model": "mock", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    wide = b'{"model": "mock", "input": [' + b"{}," * 10000 + b"{}]}"
    for body in (
        deep,
        wide,
        b'{"model": "\xff\xfe", "messages": []}',
        b'{"model": "\\ud800", "name": "\\ud800"}',
        b"\xef\xbb\xbf{}",
        b"\x00" * 100,
        b'{"a": 1e999999}',
        b'{"max_tokens": 123456789012345678901234567890}',
        b"[]",
        b"null",
    ):
        send(client, method, path, auth, data=body)


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda r: f"{r[0]} {r[1]}")
def test_over_the_limit_is_413_in_the_endpoints_shape(client, route):
    method, path, auth = route
    resp = send(client, method, path, auth, data=b"x" * (MAX_BODY * 16))
    # An upload endpoint refuses a body that is not multipart before its size.
    assert resp.status_code == (400 if path in UPLOADS else 413)


def test_huge_string_field_under_the_limit(client):
    body = {"model": "mock", "messages": [{"role": "user", "content": "x" * 60000}]}
    send(client, "POST", "/v1/chat/completions", KEY, json=body)


# -- key names in the path ---------------------------------------------------------

ABUSIVE_NAMES = [
    "..",
    "../..",
    "..%2F..%2Fetc%2Fpasswd",
    "%2e%2e",
    "a%2Fb",
    "a%5Cb",
    "a%00b",
    "%00",
    "%ff%fe",
    "%C3%A9t%C3%A9",
    "%E2%80%AE",
    "%F0%9F%A6%80",
    "a" * 10_000,
    "x%0D%0ASet-Cookie:%20a=b",
    "name%20with%20spaces",
    "-leading-dash",
    ".hidden",
]


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
@pytest.mark.parametrize("name", ABUSIVE_NAMES, ids=lambda n: n[:20])
def test_key_names_in_the_path_are_refused(client, method, name):
    resp = send(client, method, f"/v1/admin/keys/{name}", ADMIN, json={})
    assert 400 <= resp.status_code < 500


@FUZZ
@given(
    name=st.text(max_size=300).filter(
        lambda s: "/" not in s and "?" not in s and s != KEY_NAME
    ),
    method=st.sampled_from(["GET", "PATCH", "DELETE"]),
)
def test_key_names_fuzzed(client, name, method):
    from urllib.parse import quote

    path = f"/v1/admin/keys/{quote(name, safe='')}"
    resp = send(client, method, path, ADMIN, json={"budget": 1})
    assert resp.status_code in (400, 404, 405), resp.data[:200]


def test_still_serves_after_the_abuse(client, capsys):
    if TRIED:
        with capsys.disabled():
            print(f"\nhostile inputs: {sum(TRIED.values())}")
            for route, n in sorted(TRIED.items()):
                if n > 1:  # (each wrong method on each path is tried once)
                    print(f"hostile inputs {n:5d}: {route}")
    resp = client.post(
        "/v1/chat/completions",
        headers=KEY,
        json={"model": "mock", "messages": [{"role": "user", "content": "still here"}]},
    )
    assert resp.status_code == 200
    assert (
        resp.get_json()["choices"][0]["message"]["content"] == "Mock reply: still here"
    )
    resp = client.post(
        "/v1/messages",
        headers=KEY,
        json={
            "model": "claude-x",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert resp.status_code == 200, resp.data
    assert client.get("/v1/admin/keys", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/chat/completions", {"max_tokens": 2**63}),
        ("/v1/chat/completions", {"max_completion_tokens": 2**64 - 1}),
        ("/v1/messages", {"max_tokens": 2**63}),
        ("/v1/embeddings", {"dimensions": 2**40, "input": "x"}),
    ],
)
def test_huge_token_counts_are_400_not_an_overflow(client, path, body):
    """Found by schemathesis: max_completion_tokens over 2**63 overflowed the
    budget's storage counter (a 500). Counts are bounded by the wire models."""
    model = "text-embedding-3-small" if "embed" in path else "gpt-4o"
    if path == "/v1/messages":
        model = "claude-x"
    full = {"model": model, "messages": [{"role": "user", "content": "x"}], **body}
    resp = send(client, "POST", path, KEY, json=full)
    assert resp.status_code == 400, resp.data


def test_transcription_temperature_from_the_sdk_is_a_number(client, upstreams):
    """Found by schemathesis: form fields are text, and the strict model refused
    every temperature (the openai SDK sends temperature=0.2 as the text "0.2")."""
    from tests.conftest import sdk_for_app

    oa, _ = upstreams
    sdk = sdk_for_app(client.application, api_key=SECRET)
    out = sdk.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", b"RIFF0000WAVE"), temperature=0.2
    )
    assert out.text == "heard 12 bytes"
    form = fake_media.parse_form(oa.requests[-1]).form
    assert form["temperature"] == "0.2"
    for bad in ("hot", "2", "nan"):
        resp = send(
            client,
            "POST",
            "/v1/audio/translations",
            KEY,
            data={
                "model": "whisper-1",
                "temperature": bad,
                "file": (io.BytesIO(b"x"), "a.wav"),
            },
            content_type="multipart/form-data",
        )
        assert (
            resp.status_code == 400
            and resp.get_json()["error"]["param"] == "temperature"
        )
