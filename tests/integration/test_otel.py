"""OpenTelemetry: spans and metrics at a real OTLP/HTTP receiver started here
(a local HTTP server whose export requests are decoded with opentelemetry-proto)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)

from crabllm_sync.extensions import find  # noqa: E402
from crabllm_sync.tracing.otel import Tracing  # noqa: E402
from tests.conftest import ROOT, free_port, make_config  # noqa: E402
from tests.extensions_support import KEY_A, auth, chat_body  # noqa: E402
from tests.fakes import openai as fake  # noqa: E402
from tests.upstream import Reply, Upstream  # noqa: E402

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CLIENT_TRACE}-{CLIENT_PARENT}-01"


@pytest.fixture
def collector():
    """An OTLP/HTTP receiver: answers 200 to every export and records it."""
    ok = lambda rec: Reply(body=b"", content_type="application/x-protobuf")  # noqa: E731
    up = Upstream({"/v1/traces": ok, "/v1/metrics": ok}).start()
    yield up
    up.stop()


def config(upstream, collector, **otel):
    return make_config(
        {
            "providers": {
                "up": {
                    "kind": "openai",
                    "base_url": f"{upstream.url}/v1",
                    "api_key": "sk-upstream",
                    "models": ["m"],
                    "max_retries": 1,
                    "timeout": 5,
                }
            },
            "keys": [{"name": "team-a", "key": KEY_A}],
            "pricing": {"m": {"prompt_cost_per_million": 1.0}},
            "extensions": {"otel": {"endpoint": collector.url, **otel}},
        }
    )


def spans(collector) -> list:
    out = []
    for rec in collector.requests:
        if rec.path != "/v1/traces":
            continue
        req = ExportTraceServiceRequest()
        req.ParseFromString(rec.body)
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                out.extend(ss.spans)
    return out


def attrs(span) -> dict:
    out = {}
    for kv in span.attributes:
        v = kv.value
        kind = v.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [x.string_value for x in v.array_value.values]
        else:
            out[kv.key] = getattr(v, kind)
    return out


def tracing(app) -> Tracing:
    t = find(app.extensions["crabllm"].extensions, Tracing)
    assert t is not None
    return t


def test_a_streamed_request_with_a_retry_is_one_span_with_a_child_per_attempt(
    upstream, collector, app_factory
):
    app = app_factory(config(upstream, collector))
    client = app.test_client()
    upstream.enqueue(
        Reply(status=500, json={"error": {"message": "boom"}}),
        Reply(events=fake.stream_events("m-2026", ["a", "b"], usage=True)),
    )
    r = client.post(
        "/v1/chat/completions",
        json=chat_body(model="m", stream=True),
        headers={**auth(KEY_A), "traceparent": TRACEPARENT},
    )
    assert r.status_code == 200 and b"[DONE]" in r.data
    tracing(app).flush()
    got = spans(collector)
    assert len(got) == 3, [s.name for s in got]
    (root,) = [s for s in got if s.parent_span_id.hex() == CLIENT_PARENT]
    children = sorted(
        (s for s in got if s.parent_span_id == root.span_id),
        key=lambda s: attrs(s)["crabllm.attempt"],
    )
    assert len(children) == 2
    # The client's trace is honoured: one trace from client to provider.
    assert {s.trace_id.hex() for s in got} == {CLIENT_TRACE}
    a = attrs(root)
    assert root.name == "chat m"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "m"
    assert a["gen_ai.response.model"] == "m-2026"
    assert a["gen_ai.response.finish_reasons"] == ["stop"]
    assert a["gen_ai.usage.input_tokens"] == 7
    assert a["gen_ai.usage.output_tokens"] == 2
    assert a["crabllm.key"] == "team-a" and a["crabllm.deployment"] == "up"
    assert a["crabllm.retries"] == 1 and "crabllm.cache_hit" not in a
    assert a["crabllm.cost_usd"] == pytest.approx(7 / 1e6)
    assert a["crabllm.stream"] is True
    first, second = children
    assert first.status.code == 2 and attrs(first)["error.type"] == "500"  # ERROR
    assert second.status.code != 2
    assert attrs(second)["gen_ai.request.model"] == "m"
    # Each attempt's request upstream carried a traceparent naming its span.
    sent = [rec.headers.get("traceparent") for rec in upstream.requests]
    assert sent == [
        f"00-{CLIENT_TRACE}-{first.span_id.hex()}-01",
        f"00-{CLIENT_TRACE}-{second.span_id.hex()}-01",
    ]


def test_a_failed_request_is_an_error_span_and_metrics_are_exported(
    upstream, collector, app_factory
):
    app = app_factory(config(upstream, collector, metrics=True))
    client = app.test_client()
    client.post("/v1/chat/completions", json=chat_body(model="m"), headers=auth(KEY_A))
    upstream.enqueue(
        Reply(status=400, json={"error": {"message": "bad input"}}),
    )
    r = client.post(
        "/v1/chat/completions", json=chat_body(model="m"), headers=auth(KEY_A)
    )
    assert r.status_code == 400
    tracing(app).flush()
    roots = [s for s in spans(collector) if not s.parent_span_id]
    assert len(roots) == 2
    ok, failed = sorted(roots, key=lambda s: s.start_time_unix_nano)
    assert ok.status.code != 2 and attrs(ok)["http.response.status_code"] == 200
    assert failed.status.code == 2 and attrs(failed)["http.response.status_code"] == 400
    names = set()
    for rec in collector.requests:
        if rec.path == "/v1/metrics":
            req = ExportMetricsServiceRequest()
            req.ParseFromString(rec.body)
            for rm in req.resource_metrics:
                for sm in rm.scope_metrics:
                    names |= {m.name for m in sm.metrics}
    assert {"gen_ai.client.token.usage", "gen_ai.client.operation.duration"} <= names


def test_a_dead_collector_costs_the_request_nothing(upstream, app_factory):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cfg = make_config(
        {
            "providers": {"up": {"kind": "mock", "models": ["m"]}},
            "keys": [{"name": "team-a", "key": KEY_A}],
            "extensions": {"otel": {"endpoint": dead, "export_timeout": 1}},
        }
    )
    app = app_factory(cfg)
    client = app.test_client()
    # Far more spans than the batch queue holds (2048): the queue drops, the
    # request path never waits on the export.
    started = time.monotonic()
    for _ in range(30):
        r = client.post(
            "/v1/chat/completions", json=chat_body(model="m"), headers=auth(KEY_A)
        )
        assert r.status_code == 200
        assert float(r.headers["x-crabllm-overhead-ms"]) < 1000
    assert time.monotonic() - started < 30


SCRIPT = """
import os, sys
from crabllm_sync.app import create_app
from crabllm_sync.config import parse_config
providers = {"m": {"kind": "mock", "models": ["m"]}}
app = create_app(parse_config({"providers": providers}, {}), env=os.environ)
body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
r = app.test_client().post("/v1/chat/completions", json=body)
assert r.status_code == 200, r.data
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
print(",".join(loaded))
"""


def _loaded(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | {
        "PYTHONPATH": str(ROOT),
        **env_extra,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_unconfigured_gateway_does_not_import_the_sdk():
    assert _loaded({}) == ""
    # The same script with the standard variable set does load it: the check
    # above can fail.
    port = free_port()
    assert "opentelemetry.sdk" in _loaded(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}"}
    )


def test_spans_arrive_from_gunicorn_gevent_workers(
    tmp_path, gunicorn, upstream, collector
):
    from tests.conftest import write_toml

    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
[providers.up]
kind = "openai"
base_url = "{upstream.url}/v1"
api_key = "sk-upstream"
models = ["m"]
max_retries = 0

[[keys]]
name = "team-a"
key = "{KEY_A}"

[extensions.otel]
endpoint = "{collector.url}"
metrics = false
""",
    )
    # The batch processor's delay, shortened so the test waits less.
    server = gunicorn(config, workers=2, env={"OTEL_BSP_SCHEDULE_DELAY": "100"})
    import httpx

    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(4):
            r = client.post(
                "/v1/chat/completions",
                json=chat_body(model="m", stream=True),
                headers={**auth(KEY_A), "traceparent": TRACEPARENT},
            )
            assert r.status_code == 200 and "[DONE]" in r.text
    deadline = time.monotonic() + 20
    while len([s for s in spans(collector) if s.kind == 2]) < 4:  # SERVER
        assert time.monotonic() < deadline, "spans did not arrive from the workers"
        time.sleep(0.05)
    got = spans(collector)
    assert {s.trace_id.hex() for s in got} == {CLIENT_TRACE}
    sent = [rec.headers.get("traceparent", "") for rec in upstream.requests]
    assert len(sent) == 4 and all(CLIENT_TRACE in t for t in sent)
