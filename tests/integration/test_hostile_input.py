"""Hostile input at every endpoint: always a 4xx in the right JSON shape, never a 500.

Property-based (hypothesis) over raw bytes, arbitrary JSON, wrong types, deep
nesting, invalid UTF-8 and bogus content types; the app still answers a normal
request afterwards.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_config

POST_ENDPOINTS = ["/v1/chat/completions", "/v1/embeddings"]
KEY = {"Authorization": "Bearer sk-hostile-test"}

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
    st.text(max_size=20),
    st.lists(json_values, max_size=3),
    st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)
chat_like = st.fixed_dictionaries(
    {},
    optional={
        "model": field_values | st.just("mock"),
        "messages": field_values | st.just([{"role": "user", "content": "x"}]),
        "input": field_values,
        "stream": field_values,
        "temperature": field_values,
        "max_tokens": field_values,
        "tools": field_values,
        "n": field_values,
    },
)


@pytest.fixture(scope="module")
def client():
    from crabllm_sync.app import create_app

    config = make_config(
        {
            "max_body_size": 64 * 1024,
            "providers": {"m": {"kind": "mock", "models": ["mock"]}},
            "keys": [{"name": "t", "key": "sk-hostile-test"}],
        }
    )
    app = create_app(config)
    return app.test_client()


def _check(resp) -> None:
    assert resp.status_code < 500, resp.data[:300]
    if resp.status_code >= 400:
        body = json.loads(resp.data)
        assert set(body["error"]) == {"message", "type", "param", "code"}


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(path=st.sampled_from(POST_ENDPOINTS), body=st.binary(max_size=300))
def test_random_bytes(client, path, body):
    _check(client.post(path, data=body, headers=KEY))


@FUZZ
@given(path=st.sampled_from(POST_ENDPOINTS), body=json_values)
def test_arbitrary_json(client, path, body):
    _check(client.post(path, data=json.dumps(body), headers=KEY))


@FUZZ
@given(path=st.sampled_from(POST_ENDPOINTS), body=chat_like)
def test_plausible_bodies_with_wrong_types(client, path, body):
    resp = client.post(path, data=json.dumps(body), headers=KEY)
    _check(resp)
    if resp.status_code == 200 and resp.mimetype == "text/event-stream":
        assert resp.get_data().endswith(b"data: [DONE]\n\n")


@FUZZ
@given(
    ctype=st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
    body=st.binary(max_size=100),
)
def test_bogus_content_types(client, ctype, body):
    _check(
        client.post(
            "/v1/chat/completions", data=body, headers={**KEY, "Content-Type": ctype}
        )
    )


@pytest.mark.parametrize("path", POST_ENDPOINTS)
def test_deep_nesting_and_invalid_utf8(client, path):
    deep = b'{"model": "mock", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    _check(client.post(path, data=deep, headers=KEY))
    _check(
        client.post(path, data=b'{"model": "\xff\xfe", "messages": []}', headers=KEY)
    )
    _check(client.post(path, data=b"\xef\xbb\xbf{}", headers=KEY))


def test_huge_string_is_413_before_reading_it_all(client):
    resp = client.post("/v1/chat/completions", data=b"x" * (1024 * 1024), headers=KEY)
    assert resp.status_code == 413


def test_multipart_to_a_json_endpoint(client):
    resp = client.post(
        "/v1/chat/completions",
        headers=KEY,
        data={"file": (__import__("io").BytesIO(b"abc"), "a.wav")},
        content_type="multipart/form-data",
    )
    _check(resp)
    assert resp.status_code == 400


def test_still_serves_after_the_abuse(client):
    resp = client.post(
        "/v1/chat/completions",
        headers=KEY,
        json={"model": "mock", "messages": [{"role": "user", "content": "still here"}]},
    )
    assert resp.status_code == 200
    assert (
        resp.get_json()["choices"][0]["message"]["content"] == "Mock reply: still here"
    )
