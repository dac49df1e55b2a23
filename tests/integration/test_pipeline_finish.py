"""Every request ends through the one finish path, whatever ends it.

An adapter with a bug (it raises TypeError), a body nested too deeply to be
sent on: the request is answered 500 (or refused 400 at parse), and what
admission took is given back: the budget reservation, the concurrency lease,
the breaker probe; the request is one usage row with its status.
"""

from __future__ import annotations

from typing import Any

import pytest

from crabllm_sync import providers
from crabllm_sync.app import create_app
from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import UsageRecorder
from crabllm_sync.providers import mock
from crabllm_sync.views.body import MAX_JSON_DEPTH, depth
from tests.extensions_support import KEY_A, auth, ext_config

# -- an adapter with a bug: this module is registered as provider kind "buggy" --

BASE_URL = None
BUG = {"at": "call"}  # "call", "stream" (after the first chunk) or "none"


def chat(dep: Any, session: Any, body: dict[str, Any]) -> dict[str, Any]:
    if BUG["at"] == "call":
        raise TypeError("a bug in an adapter")
    return mock.chat(dep, session, body)


def chat_stream(dep: Any, session: Any, body: dict[str, Any]) -> Any:
    if BUG["at"] == "call":
        raise TypeError("a bug in an adapter")
    chunks = mock.chat_stream(dep, session, body)
    yield next(chunks)
    if BUG["at"] == "stream":
        raise TypeError("a bug in an adapter, mid-stream")
    yield from chunks


@pytest.fixture
def buggy_kind():
    providers.ADAPTERS["buggy"] = __name__
    BUG["at"] = "call"
    yield
    del providers.ADAPTERS["buggy"]


@pytest.fixture
def app(buggy_kind, upstream, tmp_path):
    config = ext_config(
        upstream,
        tmp_path,
        providers={
            "bad": {
                "kind": "buggy",
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["b"],
                "max_retries": 2,
            }
        },
        keys=[
            {
                "name": "team-a",
                "key": KEY_A,
                "budget": 1.0,
                "max_parallel_requests": 1,
            }
        ],
        pricing={
            "b": {"prompt_cost_per_million": 1.0, "completion_cost_per_million": 2.0}
        },
        routing={"failure_threshold": 1, "cooldown_seconds": 60},
    )
    app = create_app(config)
    app.testing = True
    yield app
    app.extensions["crabllm"].close()


def rows(app) -> list[dict]:
    rec = find(app.extensions["crabllm"].extensions, UsageRecorder)
    assert rec is not None
    rec.flush()
    return list(rec.db.m.UsageRecord.select().dicts())


def held(app, prefix: str) -> dict[str, int]:
    storage = app.extensions["crabllm"].storage
    # The budget's ":rebuilt" marker says the counter was checked against the
    # usage ledger; it holds nothing.
    return {
        k: int(v)
        for k, v in storage.list_prefix(prefix)
        if int(v) and not k.endswith(":rebuilt")
    }


def half_open(app) -> None:
    """Put the breaker of bad/b past its cooling: the next call is its probe."""
    storage = app.extensions["crabllm"].storage
    storage.set("health:bad:b:fails", b"1")
    storage.set("health:bad:b:until", b"0.0")


def body(**over: Any) -> dict[str, Any]:
    return {"model": "b", "messages": [{"role": "user", "content": "hi"}], **over}


def assert_nothing_held(app) -> None:
    assert held(app, "budget:") == {}, "the budget reservation was not refunded"
    assert held(app, "conc:") == {}, "the concurrency lease was not released"
    assert held(app, "health:bad:b:probe") == {}, "the breaker probe is stuck"


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_an_adapter_raising_typeerror_gives_everything_back_and_is_one_500_row(
    app, stream
):
    half_open(app)
    client = app.test_client()
    resp = client.post(
        "/v1/chat/completions", json=body(stream=stream), headers=auth(KEY_A)
    )
    assert resp.status_code == 500
    assert resp.json["error"]["code"] == "internal_error"
    assert_nothing_held(app)
    assert [r["status"] for r in rows(app)] == [500]
    # The lease (max_parallel_requests = 1) and the probe are free again.
    BUG["at"] = "none"
    again = client.post("/v1/chat/completions", json=body(), headers=auth(KEY_A))
    assert again.status_code == 200, again.json
    assert [r["status"] for r in rows(app)] == [500, 200]


def test_an_adapter_raising_typeerror_mid_stream_ends_it_as_one_500_row(app):
    BUG["at"] = "stream"
    client = app.test_client()
    resp = client.post(
        "/v1/chat/completions", json=body(stream=True), headers=auth(KEY_A)
    )
    assert resp.status_code == 200  # the headers went out with the first chunk
    last = resp.get_data().strip().split(b"\n\n")[-1]
    assert b'"code":"internal_error"' in last
    assert_nothing_held(app)
    assert [r["status"] for r in rows(app)] == [500]


def nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_a_body_nested_deeper_than_the_limit_is_a_400_naming_it(app):
    client = app.test_client()
    deep = body(metadata_blob=nested(MAX_JSON_DEPTH))  # one more level: the body
    resp = client.post("/v1/chat/completions", json=deep, headers=auth(KEY_A))
    assert resp.status_code == 400
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert str(MAX_JSON_DEPTH) in resp.json["error"]["message"]
    assert rows(app) == []  # refused before anything ran


def test_a_body_too_deep_to_serialise_is_a_400_that_holds_nothing(app):
    # Deeper than orjson serialises (255) but parseable (1024): once a 500
    # after admission; now refused at parse, with nothing taken.
    client = app.test_client()
    deep = {**body(model="m"), "metadata_blob": nested(300)}
    resp = client.post("/v1/chat/completions", json=deep, headers=auth(KEY_A))
    assert resp.status_code == 400
    assert_nothing_held(app)
    assert rows(app) == []
    ok = client.post("/v1/chat/completions", json=body(model="m"), headers=auth(KEY_A))
    assert ok.status_code == 200


def test_depth_counts_levels_of_arrays_and_objects():
    assert depth(1) == 0
    assert depth({}) == 1
    assert depth({"a": [1, {"b": []}]}) == 4
    assert depth(nested(500)) == 500
