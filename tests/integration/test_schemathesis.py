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
from hypothesis import HealthCheck, Phase, find, given, settings
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


@pytest.fixture(scope="module")
def schema(_client):  # noqa: F811
    app = _client.application
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


def _auth(path: str) -> dict[str, str]:
    return ADMIN if path.startswith(("/v1/admin", "/v1/cache", "/metrics")) else KEY


CASES = [(m, p, GenerationMode.POSITIVE) for m, p in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p in NEGATIVE
]


@pytest.mark.parametrize("method,path,mode", CASES)
def test_openapi_operation(schema, method, path, mode):
    operation = schema[path][method]
    headers = _auth(path)
    tried: Counter[int] = Counter()

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
        tried[resp.status_code] += 1

    run()
    # The tally (for RELIABILITY.md): shown with -s.
    for status, n in sorted(tried.items()):
        op = f"{method} {path} {mode.value}"
        print(f"schemathesis tried {n:4d} inputs: {op} -> {status}")


@pytest.mark.parametrize("path", sorted(SERVED))
def test_a_generated_valid_request_goes_all_the_way(schema, path):
    """Some generated valid request to each endpoint with a served model is
    answered 200 and that answer conforms, so the response checks above see
    real answers, not only errors (about a quarter of generated chat and
    Messages requests are; find() searches until one is)."""
    operation = schema[path]["POST"]

    def answered(case) -> bool:
        if isinstance(case.body, dict):
            case.body["model"] = SERVED[path]
        resp = case.call_and_validate(headers=KEY, checks=CHECKS)
        return resp.status_code == 200

    find(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        answered,
        settings=settings(
            max_examples=500,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[Phase.generate],  # the first one found will do: no shrinking
        ),
    )


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
