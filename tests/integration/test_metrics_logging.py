"""/metrics in Prometheus text format, and the one log line per request."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.extensions_support import ADMIN, KEY_A, auth, chat_body, ext_config
from tests.fakes import openai as fake
from tests.upstream import Reply

LOGGER = "crabllm_sync.extensions.logging"


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams, family, sample, **labels) -> float:
    total = 0.0
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            total += s.value
    return total


def test_metrics_parse_and_count(upstream, tmp_path, app_factory):
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            extensions={"cache": {}},
            providers={
                "up": {
                    "kind": "openai",
                    "base_url": f"{upstream.url}/v1",
                    "models": ["m", "e"],
                    "max_retries": 0,
                }
            },
        )
    )
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body("c"), headers=auth(KEY_A))
    client.post("/v1/chat/completions", json=chat_body("c"), headers=auth(KEY_A))
    upstream.enqueue(Reply(status=500, json={"error": {"message": "boom"}}))
    r = client.post("/v1/chat/completions", json=chat_body("d"), headers=auth(KEY_A))
    assert r.status_code == 502
    text = client.get("/metrics", headers=auth(ADMIN)).data.decode()
    fams = families(text)
    assert value(fams, "crabllm_requests", "crabllm_requests_total", status="200") == 2
    assert value(fams, "crabllm_requests", "crabllm_requests_total", status="502") == 1
    assert value(fams, "crabllm_cache_hits", "crabllm_cache_hits_total") == 1
    assert value(fams, "crabllm_upstream_errors", "crabllm_upstream_errors_total") == 1
    lat = "crabllm_request_duration_seconds"
    assert value(fams, lat, lat + "_count", endpoint="chat") == 3
    assert value(fams, "crabllm_tokens", "crabllm_tokens_total", type="input") == 7
    assert value(fams, "crabllm_tokens", "crabllm_tokens_total", type="output") == 3
    assert value(fams, "crabllm_cost_nanos", "crabllm_cost_nanos_total") == 13000
    assert fams["crabllm_active_streams"].type == "gauge"


def test_active_streams_gauge_follows_open_streams(
    upstream, tmp_path, served, app_factory
):
    import threading

    app = app_factory(ext_config(upstream, tmp_path))
    url = served(app)
    gate = threading.Event()
    events = fake.stream_events("m", ["a", "b"])

    def pieces():
        from tests.upstream import sse_bytes

        yield sse_bytes(events[0])
        gate.wait(20)
        for e in events[1:]:
            yield sse_bytes(e)

    upstream.enqueue(Reply(chunks=pieces()))

    def active() -> float:
        fams = families(httpx.get(f"{url}/metrics", headers=auth(ADMIN)).text)
        return value(fams, "crabllm_active_streams", "crabllm_active_streams")

    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json=chat_body(stream=True),
        headers=auth(KEY_A),
        timeout=20,
    ) as resp:
        lines = resp.iter_lines()
        next(ln for ln in lines if ln.startswith("data:"))
        assert active() == 1
        gate.set()
        assert [ln for ln in lines if ln.startswith("data:")][-1] == "data: [DONE]"
    assert active() == 0


def test_one_line_per_request_with_key_name_and_no_prompt(
    upstream, tmp_path, app_factory, caplog
):
    app = app_factory(ext_config(upstream, tmp_path))
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        client.post(
            "/v1/chat/completions",
            json=chat_body("top secret words"),
            headers=auth(KEY_A),
        )
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1
    line = lines[0]
    assert "key=team-a" in line and "status=200" in line and "model=m" in line
    assert "prompt_tokens=7" in line and "completion_tokens=3" in line
    assert KEY_A not in line
    assert "top secret" not in line
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY_A not in everything


def test_json_lines_and_prompts_only_when_asked(
    upstream, tmp_path, app_factory, caplog
):
    app = app_factory(
        ext_config(
            upstream,
            tmp_path,
            extensions={"logging": {"json_format": True, "log_prompts": True}},
        )
    )
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        client.post(
            "/v1/chat/completions", json=chat_body("show me"), headers=auth(KEY_A)
        )
        upstream.enqueue(Reply(status=400, json={"error": {"message": "bad"}}))
        client.post("/v1/chat/completions", json=chat_body("x"), headers=auth(KEY_A))
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert len(records) == 2
    ok, failed = records
    assert ok["key"] == "team-a" and ok["status"] == 200 and ok["provider"] == "up"
    assert ok["prompt"] == [{"role": "user", "content": "show me"}]
    assert ok["cost_usd"] == 13000 / 1e9
    assert failed["status"] == 400 and failed["error"] == "upstream_error"
    assert "prompt" not in failed  # on errors the body is not at hand


def test_level_from_config_silences_request_lines(
    upstream, tmp_path, app_factory, caplog
):
    app = app_factory(
        ext_config(upstream, tmp_path, extensions={"logging": {"level": "warning"}})
    )
    try:
        with caplog.at_level(logging.NOTSET):
            logging.getLogger(LOGGER).setLevel(logging.NOTSET)
            app.test_client().post(
                "/v1/chat/completions", json=chat_body(), headers=auth(KEY_A)
            )
        assert [r for r in caplog.records if r.name == LOGGER] == []
    finally:
        logging.getLogger("crabllm_sync").setLevel(logging.NOTSET)


HOSTILE_MODEL = (
    "gpt\nid=forged key=admin status=200\r\x1b[31mred\x9b2J\u2028\x00" + "x" * 10_000
)


@pytest.mark.parametrize("json_format", [False, True])
def test_control_characters_in_a_requested_model_are_escaped_and_capped(
    upstream, tmp_path, app_factory, caplog, json_format
):
    app = app_factory(
        ext_config(
            upstream, tmp_path, extensions={"logging": {"json_format": json_format}}
        )
    )
    with caplog.at_level(logging.INFO, logger=LOGGER):
        r = app.test_client().post(
            "/v1/chat/completions",
            json=chat_body(model=HOSTILE_MODEL),
            headers=auth(KEY_A),
        )
    assert r.status_code == 404
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    for raw in ("\n", "\r", "\x1b", "\x9b", "\u2028", "\x00"):
        assert raw not in line
    assert len(line) < 1000
    if json_format:
        assert json.loads(line)["model"].startswith("gpt\nid=forged")
    else:
        assert " id=forged" not in line and "status=404" in line


METRICS_TOKEN = "metrics-token-for-tests-0123456789"


def test_metrics_needs_the_metrics_or_admin_token(upstream, tmp_path, app_factory):
    app = app_factory(ext_config(upstream, tmp_path, metrics_token=METRICS_TOKEN))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    for headers in ({}, auth(KEY_A), auth("not-the-token")):
        r = client.get("/metrics", headers=headers)
        assert r.status_code == 401, headers
        assert r.json["error"]["code"] == "invalid_api_key"
        assert b"team-a" not in r.data and b"crabllm_cost" not in r.data
    for token in (METRICS_TOKEN, ADMIN):
        r = client.get("/metrics", headers=auth(token))
        assert r.status_code == 200
        fams = families(r.data.decode())
        assert value(fams, "crabllm_cost_nanos", "crabllm_cost_nanos_total") == 13000


def test_metrics_without_any_token_configured_is_403_naming_the_fix(
    upstream, tmp_path, app_factory
):
    app = app_factory(ext_config(upstream, tmp_path, admin_token=None))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(), headers=auth(KEY_A))
    r = client.get("/metrics")
    assert r.status_code == 403
    assert "metrics_token" in r.json["error"]["message"]
    assert b"team-a" not in r.data


def test_a_model_name_without_spaces_cannot_forge_a_text_line(
    upstream, tmp_path, app_factory, caplog
):
    app = app_factory(ext_config(upstream, tmp_path))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        app.test_client().post(
            "/v1/chat/completions",
            json=chat_body(model="m\x1b[2J\nevent=request\tkey=team-b"),
            headers=auth(KEY_A),
        )
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "\n" not in line and "\x1b" not in line and "\t" not in line
    assert '"m\\u001b[2J\\nevent=request\\tkey=team-b"' in line
