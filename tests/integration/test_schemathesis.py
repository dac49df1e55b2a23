"""schemathesis against /openapi.json, driving the in-process WSGI app.

Every operation in the document gets generated requests, valid (positive) and
invalid (negative), with a key's or the admin token's credentials; the answers
must not be server errors and must conform to the document (status, content
type, response schema). Real fake upstreams stand behind the gateway.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi import checks as oa_checks

from crabllm_sync.views.openapi import document
from tests.fuzzing import examples
from tests.integration.test_hostile_input import (
    ADMIN,
    KEY,
    upstreams,  # noqa: F401 - the module fixture, reused
)
from tests.integration.test_hostile_input import client as _client  # noqa: F401

_DOC = document()["paths"]
OPERATIONS = sorted(
    (method.upper(), path) for path, item in _DOC.items() for method in item
)
# Negative cases need something to break: a body or a parameter.
NEGATIVE = [
    (m, p)
    for m, p in OPERATIONS
    if {"requestBody", "parameters"} & set(_DOC[p][m.lower()])
]
CHECKS = [
    schemathesis.checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
]
EXAMPLES = examples(60)
# A model each endpoint serves (behind the fake upstreams), so valid requests
# go all the way and their answers are checked against the document too.
SERVED = {
    "/v1/chat/completions": "gpt-4o",
    "/v1/embeddings": "text-embedding-3-small",
    "/v1/images/generations": "gpt-image-1",
    "/v1/audio/speech": "tts-1",
    "/v1/audio/transcriptions": "whisper-1",
    "/v1/audio/translations": "whisper-1",
    "/v1/messages": "claude-x",
    "/v1/messages/count_tokens": "claude-x",
}
TRIED: Counter[str] = Counter()


@pytest.fixture(scope="module")
def schema(_client):  # noqa: F811
    app = _client.application
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def _auth(path: str) -> dict[str, str]:
    return ADMIN if path.startswith(("/v1/admin", "/v1/cache")) else KEY


CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in NEGATIVE
]


@pytest.mark.parametrize("method,path,mode", CASES)
def test_openapi_operation(schema, method, path, mode):
    operation = schema[path][method]
    headers = _auth(path)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        served = SERVED.get(path)
        if mode == GenerationMode.POSITIVE and served and isinstance(case.body, dict):
            case.body["model"] = served
        resp = case.call_and_validate(headers=headers, checks=CHECKS)
        TRIED[f"{method} {path} {mode.value} -> {resp.status_code}"] += 1

    run()


def test_valid_requests_went_all_the_way(capsys) -> None:
    """After the operation tests: print the tally (for RELIABILITY.md) and check
    each endpoint with a served model answered 200 to some generated request,
    so the response checks saw real answers, not only errors."""
    ran = {" ".join(k.split()[:2]) for k in TRIED}
    if not {f"POST {p}" for p in SERVED} <= ran:
        pytest.skip("run together with every test_openapi_operation case")
    with capsys.disabled():
        for op, n in sorted(TRIED.items()):
            print(f"schemathesis tried {n:4d} inputs: {op}")
    for path in SERVED:
        assert TRIED[f"POST {path} positive -> 200"] > 0, path


@pytest.mark.parametrize(
    "path,body",
    [
        (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        ),
        (
            "/v1/messages",
            {
                "model": "claude-x",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
        (
            "/v1/messages",
            {
                "model": "gpt-4o",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "hi"}],
            },
        ),
    ],
)
def test_streams_conform_event_by_event(schema, path, body):
    """Found by schemathesis: the document described a stream as one string.
    Each event (and OpenAI's final [DONE]) now conforms to the documented event."""
    case = schema[path]["POST"].Case(body={**body, "stream": True})
    resp = case.call_and_validate(headers=KEY, checks=CHECKS)
    assert resp.status_code == 200, resp.content[:300]
    assert b"data: " in resp.content and b"\n\n" in resp.content
