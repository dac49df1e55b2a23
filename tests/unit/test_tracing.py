"""tracing/: the OTLP encoder against the SDK's own, the W3C traceparent
parser, the sampling decision, and the settings read from an explicit env."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.exporter.otlp.proto.common")

from opentelemetry.exporter.otlp.proto.common.trace_encoder import (  # noqa: E402
    encode_spans,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import (  # noqa: E402
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: E402
from opentelemetry.trace import (  # noqa: E402
    Link,
    SpanKind,
    Status,
    StatusCode,
    set_span_in_context,
)

from crabllm_sync.config import OtelExtension  # noqa: E402
from crabllm_sync.tracing import spans  # noqa: E402
from crabllm_sync.tracing.otlp import Encoder  # noqa: E402
from crabllm_sync.tracing.settings import resolve  # noqa: E402

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ATTRS = {
    "gen_ai.operation.name": "chat",
    "http.response.status_code": 200,
    "crabllm.cost_usd": 0.25,
    "crabllm.stream": True,
    "crabllm.retries": -1,  # a negative int64: ten bytes on the wire
    "gen_ai.response.finish_reasons": ("stop", "length"),
    "crabllm.note": "é ünïcode",
    "empty": "",
}


def _decode(data: bytes) -> ExportTraceServiceRequest:
    req = ExportTraceServiceRequest()
    req.ParseFromString(data)
    return req


def test_spans_built_at_their_end_encode_as_the_sdk_encodes_them():
    resource = Resource({"service.name": "crabllm-sync", "n": 3}, "https://schema")
    scope = InstrumentationScope("crabllm_sync")
    parent = spans.parse_traceparent(TRACEPARENT, "a=b,c=d")
    sampler = spans.Sampler(1.0)
    batch = []
    for i in range(40):  # twice through the attribute cache
        root = sampler.root(time.time_ns(), parent if i % 2 else None)
        attempt = spans.child(root, time.time_ns())
        failed = Status(StatusCode.ERROR, "upstream said no") if i % 3 else spans.UNSET
        batch.append(
            spans.finished(
                attempt,
                root.context(),
                "chat m",
                SpanKind.CLIENT,
                {"crabllm.attempt": i},
                time.time_ns(),
                failed,
                resource,
                scope,
            )
        )
        batch.append(
            spans.finished(
                root,
                parent if i % 2 else None,
                "chat m",
                SpanKind.SERVER,
                {**ATTRS, "crabllm.request_id": f"{i:032x}"},
                time.time_ns(),
                spans.UNSET,
                resource,
                scope,
            )
        )
    ours = _decode(Encoder().encode(batch))
    assert ours == encode_spans(batch)
    assert len(ours.resource_spans[0].scope_spans[0].spans) == 80


class _Keep(SpanExporter):
    def __init__(self) -> None:
        self.spans: list = []

    def export(self, batch):
        self.spans.extend(batch)
        return SpanExportResult.SUCCESS


def test_sdk_tracer_spans_encode_as_the_sdk_encodes_them():
    """The general path (any ReadableSpan): events, links, scopes, statuses."""
    keep = _Keep()
    provider = TracerProvider(resource=Resource.create({"service.name": "x"}))
    provider.add_span_processor(SimpleSpanProcessor(keep))
    tracer = provider.get_tracer("t", "1.0", attributes={"scope.attr": 1})
    for i in range(5):
        outer = tracer.start_span("outer", kind=SpanKind.SERVER, attributes=ATTRS)
        inner = tracer.start_span(
            "inner",
            context=set_span_in_context(outer),
            kind=SpanKind.CLIENT,
            links=[Link(outer.get_span_context(), {"l": i})],
        )
        inner.add_event("retry", {"attempt": i})
        inner.set_status(Status(StatusCode.ERROR, "boom"))
        inner.end()
        outer.end()
    provider.shutdown()
    assert _decode(Encoder().encode(keep.spans)) == encode_spans(keep.spans)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # upper case
    ],
)
def test_a_malformed_traceparent_is_ignored(header):
    assert spans.parse_traceparent(header, None) is None


def test_the_clients_trace_and_sampled_flag_are_followed():
    parent = spans.parse_traceparent(TRACEPARENT, "vendor=x")
    assert parent is not None and parent.is_remote
    never = spans.Sampler(0.0)
    root = never.root(1, parent)
    assert root.sampled and root.trace_id == parent.trace_id
    assert root.traceparent().startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert root.tracestate() == "vendor=x"
    unsampled = spans.parse_traceparent(TRACEPARENT[:-2] + "00", None)
    assert not spans.Sampler(1.0).root(1, unsampled).sampled
    # A future version's extra fields are allowed.
    assert spans.parse_traceparent("01" + TRACEPARENT[2:] + "-more", None)


def test_new_traces_are_sampled_at_the_ratio():
    sampler = spans.Sampler(0.25)
    kept = sum(sampler.root(1, None).sampled for _ in range(4000))
    assert 800 < kept < 1200
    assert all(spans.Sampler(1.0).root(1, None).sampled for _ in range(200))
    assert not any(spans.Sampler(0.0).root(1, None).sampled for _ in range(200))


def test_settings_come_from_the_env_given_not_the_process():
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=a%20b, api-key = k1 ,junk",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=gw",
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_MAX_QUEUE_SIZE": "nonsense",
    }
    s = resolve(None, env)
    assert s is not None and s.traces and not s.metrics
    assert s.traces_endpoint == "http://collector:4318/v1/traces"
    assert s.metrics_endpoint == "http://collector:4318/v1/metrics"
    assert s.traces_headers == {"x-team": "a b", "api-key": "k1"}
    assert s.resource == {"deployment.environment": "prod", "service.name": "gw"}
    assert s.schedule_delay_ms == 250 and s.max_queue_size == 2048
    # The signal's own variable is taken as it is; the config wins over both.
    own = {**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"}
    assert resolve(None, own).traces_endpoint == "http://t:1/x"
    section = OtelExtension(endpoint="http://cfg:4318", service_name="mine")
    s = resolve(section, own)
    assert s.traces_endpoint == "http://cfg:4318/v1/traces"
    assert s.resource["service.name"] == "mine"
    # Off: nothing configured, or disabled whatever the config says.
    assert resolve(None, {}) is None
    assert resolve(section, {"OTEL_SDK_DISABLED": "true"}) is None
    assert resolve(section, {}).resource == {"service.name": "mine"}
