"""Each error row of SPEC.md the foundation owns, over HTTP, in OpenAI's shape."""

from __future__ import annotations

import pytest

from tests.conftest import make_config, openai_provider


@pytest.fixture
def client(upstream, app_factory):
    config = make_config(
        {
            "max_body_size": 2048,
            "providers": {
                "up": openai_provider(upstream, ["gpt-4o"]),
                "m": {"kind": "mock", "models": ["mock"]},
            },
            "keys": [{"name": "team-a", "key": "sk-team-a-123", "models": ["gpt-4o*"]}],
        }
    )
    return app_factory(config).test_client()


AUTH = {"Authorization": "Bearer sk-team-a-123"}
MSGS = [{"role": "user", "content": "hi"}]


def _error(resp, status, code):
    assert resp.status_code == status, resp.data
    assert resp.content_type == "application/json"
    body = resp.get_json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    return body["error"]


def test_malformed_json_is_400(client):
    err = _error(
        client.post("/v1/chat/completions", data=b"{nope", headers=AUTH),
        400,
        "invalid_request_error",
    )
    assert "not valid JSON" in err["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MSGS}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": 7, "messages": MSGS}, "model"),
        ({"model": "gpt-4o", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o", "messages": MSGS, "stream": "yes"}, "stream"),
        (
            {"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]},
            "messages.0.role",
        ),
        ({"model": "gpt-4o", "messages": MSGS, "temperature": 9}, "temperature"),
    ],
)
def test_missing_or_wrong_typed_field_is_400_naming_it(client, body, param):
    err = _error(
        client.post("/v1/chat/completions", json=body, headers=AUTH),
        400,
        "invalid_request_error",
    )
    assert err["param"] == param and param in err["message"]


def test_body_that_is_not_an_object_is_400(client):
    _error(
        client.post("/v1/chat/completions", json=[1, 2], headers=AUTH),
        400,
        "invalid_request_error",
    )


def test_missing_key_is_401(client):
    _error(
        client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MSGS}),
        401,
        "invalid_api_key",
    )


def test_unknown_key_is_401(client):
    _error(
        client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": MSGS},
            headers={"Authorization": "Bearer sk-wrong-999"},
        ),
        401,
        "invalid_api_key",
    )


def test_model_not_allowed_is_403(client, upstream):
    _error(
        client.post(
            "/v1/chat/completions",
            json={"model": "mock", "messages": MSGS},
            headers=AUTH,
        ),
        403,
        "model_not_allowed",
    )
    assert upstream.requests == []


def test_models_lists_only_what_the_key_may_use(client):
    resp = client.get("/v1/models", headers=AUTH)
    assert [m["id"] for m in resp.get_json()["data"]] == ["gpt-4o"]


def test_unknown_model_is_404(client):
    _error(
        client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-x", "messages": MSGS},
            headers=AUTH,
        ),
        404,
        "model_not_found",
    )


def test_body_over_limit_is_413(client, upstream):
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 5000}]}
    _error(
        client.post("/v1/chat/completions", json=big, headers=AUTH),
        413,
        "request_too_large",
    )
    assert upstream.requests == []


def test_unknown_route_and_wrong_method_answer_json(client):
    _error(client.get("/v1/nope"), 404, "not_found")
    _error(client.get("/v1/chat/completions", headers=AUTH), 405, "method_not_allowed")


def test_health_needs_no_key(client):
    assert client.get("/health").get_json() == {"status": "ok"}
