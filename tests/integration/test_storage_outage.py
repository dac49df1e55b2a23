"""Storage outages: limits and budgets fail closed (503) unless fail_open; the
cache fails open; keys without limits never touch storage."""

from __future__ import annotations

import pytest

from crabllm_sync.app import create_app
from tests.extensions_support import (
    KEY_A,
    SwitchableStorage,
    auth,
    chat_body,
    ext_config,
)
from tests.upstream import Reply

MADE: list = []  # the apps app_with() built for the running test


@pytest.fixture(autouse=True)
def _close_made_apps():
    """Close each test's apps (their usage flushers) after it."""
    yield
    while MADE:
        MADE.pop().extensions["crabllm"].close()


def app_with(upstream, tmp_path, storage, **over):
    app = create_app(ext_config(upstream, tmp_path, **over), storage=storage)
    app.testing = True
    MADE.append(app)
    return app


def post(app, body=None):
    return app.test_client().post(
        "/v1/chat/completions", json=body or chat_body(), headers=auth(KEY_A)
    )


@pytest.mark.parametrize(
    "section",
    [
        {"rate_limit": {"requests_per_minute": 10}},
        {"rate_limit": {"tokens_per_minute": 10}},
        {"budget": {"default_budget": 1.0}},
    ],
)
def test_limits_fail_closed_with_503_by_default(upstream, tmp_path, section):
    storage = SwitchableStorage()
    app = app_with(upstream, tmp_path, storage, extensions=section)
    assert post(app).status_code == 200
    storage.down = True
    r = post(app)
    assert r.status_code == 503
    assert r.json["error"]["code"] == "service_unavailable"
    assert len(upstream.requests) == 1


def test_concurrency_fails_closed_with_the_rate_limit_policy(upstream, tmp_path):
    storage = SwitchableStorage()
    keys = [{"name": "team-a", "key": KEY_A, "max_parallel_requests": 1}]
    app = app_with(upstream, tmp_path, storage, keys=keys)
    storage.down = True
    assert post(app).status_code == 503
    app2 = app_with(
        upstream,
        tmp_path,
        storage,
        keys=keys,
        extensions={"rate_limit": {"fail_open": True}},
    )
    assert post(app2).status_code == 200


@pytest.mark.parametrize(
    "section",
    [
        {
            "rate_limit": {
                "requests_per_minute": 10,
                "tokens_per_minute": 5,
                "fail_open": True,
            }
        },
        {"budget": {"default_budget": 1.0, "fail_open": True}},
        {"cache": {}},  # the cache fails open by default
    ],
)
def test_fail_open_lets_requests_through(upstream, tmp_path, section):
    storage = SwitchableStorage()
    app = app_with(upstream, tmp_path, storage, extensions=section)
    storage.down = True
    r = post(app)
    assert r.status_code == 200
    assert r.json["choices"][0]["message"]["content"] == "echo: hello"


def test_cache_can_be_made_to_fail_closed(upstream, tmp_path):
    storage = SwitchableStorage()
    app = app_with(
        upstream, tmp_path, storage, extensions={"cache": {"fail_open": False}}
    )
    storage.down = True
    assert post(app).status_code == 503


def test_keys_without_limits_do_not_need_storage(upstream, tmp_path):
    storage = SwitchableStorage()
    app = app_with(upstream, tmp_path, storage)
    storage.down = True
    assert post(app).status_code == 200


def test_outage_after_admission_does_not_fail_the_answer(upstream, tmp_path):
    import threading

    storage = SwitchableStorage()
    keys = [{"name": "team-a", "key": KEY_A, "max_parallel_requests": 2}]
    app = app_with(
        upstream,
        tmp_path,
        storage,
        keys=keys,
        extensions={
            "rate_limit": {"tokens_per_minute": 100},
            "budget": {"default_budget": 1.0},
            "cache": {},
        },
    )
    from tests.fakes import openai as fake

    gate = threading.Event()
    upstream.enqueue(Reply(json=fake.completion("m", "late"), hang=gate))
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", post(app)))
    t.start()
    upstream.wait_for_requests(1)
    storage.down = True  # settle, release and cache store all fail now
    gate.set()
    t.join(20)
    assert result["r"].status_code == 200
    storage.down = False
    # The lease expires by TTL; the settled figure keeps the reservation.
    assert storage.list_prefix("conc:")
