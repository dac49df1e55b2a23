"""Model discovery: an OpenAI-compatible provider without `models` serves
what its upstream's /v1/models lists; bounded; the last good list is kept."""

from __future__ import annotations

import logging
import threading

from crabllm_sync.catalog.discovery import MAX_MODELS
from tests.conftest import make_config
from tests.extensions_support import ADMIN, KEY_A, auth, chat_body
from tests.upstream import Reply

MODELS_PATH = "/v1/models"


def listing(*names: str) -> Reply:
    data = [{"id": n, "object": "model", "owned_by": "x"} for n in names]
    return Reply(json={"object": "list", "data": data})


def config(upstream, tmp_path, storage=None, **provider):
    return make_config(
        {
            "admin_token": ADMIN,
            "providers": {
                "local": {
                    "kind": "ollama",
                    "base_url": f"{upstream.url}/v1",
                    "max_retries": 0,
                    **provider,
                }
            },
            "keys": [{"name": "team-a", "key": KEY_A}],
            "storage": storage or {"kind": "memory"},
        }
    )


def served(client) -> list[str]:
    r = client.get("/v1/models", headers=auth(KEY_A))
    return sorted(m["id"] for m in r.json["data"])


def test_a_provider_without_models_serves_its_upstreams_list(
    upstream, tmp_path, app_factory
):
    upstream.route(MODELS_PATH, lambda rec: listing("llama3", "qwen2"))
    client = app_factory(config(upstream, tmp_path)).test_client()
    assert served(client) == ["llama3", "qwen2"]
    r = client.post(
        "/v1/chat/completions", json=chat_body(model="qwen2"), headers=auth(KEY_A)
    )
    assert r.status_code == 200, r.json
    assert upstream.requests[-1].json["model"] == "qwen2"


def test_a_failed_read_keeps_the_last_good_list_and_is_logged(
    upstream, tmp_path, app_factory, caplog
):
    answers = [listing("llama3")]
    upstream.route(MODELS_PATH, lambda rec: answers[-1])
    app = app_factory(config(upstream, tmp_path))
    client = app.test_client()
    assert served(client) == ["llama3"]
    catalog = app.extensions["crabllm"].catalog
    answers.append(Reply(status=500, json={"error": {"message": "down"}}))
    with caplog.at_level(logging.ERROR):
        assert catalog.rediscover() is False
    assert "local" in caplog.text and "HTTP 500" in caplog.text
    assert "keeping 1 models" in caplog.text
    assert served(client) == ["llama3"]
    answers.append(Reply(body=b"not json", content_type="application/json"))
    catalog.rediscover()
    assert served(client) == ["llama3"]
    # A new list is served once read.
    answers.append(listing("llama3", "phi4"))
    assert catalog.rediscover() is True
    assert served(client) == ["llama3", "phi4"]


def test_discovery_is_bounded_in_time_and_in_models(upstream, tmp_path, app_factory):
    hang = threading.Event()
    names = [f"m{i}" for i in range(MAX_MODELS + 50)]
    answers = [listing(*names)]
    upstream.route(MODELS_PATH, lambda rec: answers[-1])
    app = app_factory(config(upstream, tmp_path))
    client = app.test_client()
    assert len(served(client)) == MAX_MODELS
    catalog = app.extensions["crabllm"].catalog
    catalog.discovery.timeout = 0.2
    answers.append(Reply(json={"data": []}, hang=hang))
    try:
        assert catalog.rediscover() is False  # timed out: the list is kept
    finally:
        hang.set()
    assert len(served(client)) == MAX_MODELS


def test_configured_models_are_not_replaced(upstream, tmp_path, app_factory):
    upstream.route(MODELS_PATH, lambda rec: listing("other"))
    client = app_factory(config(upstream, tmp_path, models=["mine"])).test_client()
    assert served(client) == ["mine"]
    assert not [r for r in upstream.requests if r.path == MODELS_PATH]


def test_a_provider_added_at_run_time_without_models_is_discovered(
    upstream, tmp_path, app_factory
):
    upstream.route(MODELS_PATH, lambda rec: listing("gpt-x"))
    storage = {"kind": "sqlite", "path": str(tmp_path / "gw.db")}
    cfg = make_config(
        {
            "admin_token": ADMIN,
            "keys": [{"name": "team-a", "key": KEY_A}],
            "storage": storage,
        }
    )
    client = app_factory(cfg).test_client()
    r = client.post(
        "/v1/admin/providers",
        json={
            "name": "compat",
            "kind": "my-server",
            "base_url": f"{upstream.url}/v1",
            "api_key": "sk-discovery-secret-000000001",
        },
        headers=auth(ADMIN),
    )
    assert r.status_code == 201, r.json
    assert served(client) == ["gpt-x"]
    sent = [x for x in upstream.requests if x.path == MODELS_PATH][-1]
    assert sent.headers["authorization"] == "Bearer sk-discovery-secret-000000001"
