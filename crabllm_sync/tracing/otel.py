"""The OpenTelemetry SDK at work: one span per request, one child span per
upstream attempt, GenAI semantic-convention attributes and metrics, exported
over OTLP/HTTP by the SDK's batch processors (their own threads, never the
request path: a dead collector only fills and drops their bounded queues).

The request span is a child of the client's `traceparent` when it sends one;
each attempt span is current while its upstream request is sent, so the
provider receives a `traceparent` naming it (propagate.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flask import Flask, g, has_request_context, request
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from crabllm_sync.extensions import Extension, key_name
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.pricing import NANOS_PER_USD
from crabllm_sync.tracing import propagate

if TYPE_CHECKING:
    from crabllm_sync.config import OtelExtension
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError
    from crabllm_sync.gateway import Gateway
    from crabllm_sync.routing import Deployment

SPAN = "otel.span"
ATTEMPTS = "otel.attempts"
RESPONSE_MODEL = "otel.response_model"
FINISH_REASONS = "otel.finish_reasons"
_PARENT = "crabllm_otel_parent"
_START = "crabllm_otel_start"
_CONTEXT = "crabllm_otel_context"

# gen_ai.operation.name of each endpoint (semantic conventions' values).
OPERATIONS = {
    "chat": "chat",
    "messages": "chat",
    "embeddings": "embeddings",
    "images": "image_generation",
}
# gen_ai.provider.name of each provider kind; other kinds are named as they are.
PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "bedrock": "aws.bedrock",
    "azure": "azure.ai.openai",
}
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)


class Tracing(Extension):
    name = "otel"

    def __init__(self, settings: OtelExtension, gw: Gateway) -> None:
        self.gw = gw
        attrs = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
        # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
        resource = Resource.create(attrs)
        if resource.attributes.get(SERVICE_NAME, "").startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "crabllm-sync"}))
        base = settings.endpoint.rstrip("/") if settings.endpoint else None
        headers = settings.headers or None
        self.provider: TracerProvider | None = None
        self.meters: MeterProvider | None = None
        self.tracer: trace.Tracer = trace.NoOpTracer()
        if settings.traces:
            self.provider = TracerProvider(
                resource=resource,
                sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            )
            exporter = OTLPSpanExporter(
                endpoint=f"{base}/v1/traces" if base else None,
                headers=headers,
                timeout=settings.export_timeout,
            )
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
            self.tracer = self.provider.get_tracer("crabllm_sync")
        self.token_usage: Any = None
        self.duration: Any = None
        if settings.metrics:
            reader = PeriodicExportingMetricReader(
                OTLPMetricExporter(
                    endpoint=f"{base}/v1/metrics" if base else None,
                    headers=headers,
                    timeout=settings.export_timeout,
                ),
                export_interval_millis=settings.metrics_interval * 1000,
            )
            # No exemplars: checking each measurement for one costs CPU on the
            # request path, and the spans carry the same figures.
            self.meters = MeterProvider(
                resource=resource,
                metric_readers=[reader],
                exemplar_filter=AlwaysOffExemplarFilter(),
            )
            meter = self.meters.get_meter("crabllm_sync")
            self.token_usage = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Tokens used per request, by type (input, output).",
                explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
            )
            self.duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="Duration of each request through the gateway.",
                explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
            )
        self.propagator = TraceContextTextMapPropagator()

    def install(self, app: Flask) -> None:
        gw = self.gw
        gw.extensions.append(self)
        gw.on_begin.append(self.begin)
        gw.attempt_scope = self.attempt
        propagate.enable(self.propagator.inject)

        @app.before_request
        def parent() -> None:
            if "traceparent" in request.headers:  # most clients send none
                setattr(g, _PARENT, self.propagator.extract(request.headers))
            setattr(g, _START, time.time_ns())

        @app.teardown_request
        def unfinished(exc: BaseException | None) -> None:
            # Requests that end outside the finish path (model lists, usage):
            # their span ends with the request. A stream's ends with the stream.
            ctx: RequestContext | None = g.get(_CONTEXT)
            if ctx is not None and not ctx.stream:
                self._end(ctx, None)

    # -- spans --------------------------------------------------------------------

    def begin(self, ctx: RequestContext) -> None:
        if not has_request_context():
            return
        span = self.tracer.start_span(
            ctx.endpoint,
            context=g.get(_PARENT),
            kind=SpanKind.SERVER,
            start_time=g.get(_START),
            attributes={"crabllm.request_id": ctx.request_id},
        )
        ctx.state[SPAN] = span
        setattr(g, _CONTEXT, ctx)

    @contextmanager
    def attempt(self, ctx: RequestContext, dep: Deployment) -> Iterator[None]:
        """A child span around one upstream attempt, current while it runs."""
        parent = ctx.state.get(SPAN)
        if parent is None:
            yield
            return
        number = ctx.state[ATTEMPTS] = ctx.state.get(ATTEMPTS, 0) + 1
        operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
        span = self.tracer.start_span(
            f"{operation} {dep.model}",
            context=trace.set_span_in_context(parent),
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": PROVIDER_NAMES.get(dep.kind, dep.kind),
                "gen_ai.request.model": dep.model,
                "crabllm.deployment": dep.provider,
                "crabllm.attempt": number,
            },
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield
        except BaseException as exc:
            status = getattr(exc, "upstream_status", None)
            span.set_attribute("error.type", str(status or type(exc).__name__))
            message = getattr(exc, "message", "") or type(exc).__name__
            span.set_status(Status(StatusCode.ERROR, self.gw.redact(message)))
            raise
        finally:
            otel_context.detach(token)
            span.end()

    # -- the finish path -------------------------------------------------------------

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        if SPAN not in ctx.state or not isinstance(chunk, dict):
            return
        model = chunk.get("model")
        if model and RESPONSE_MODEL not in ctx.state:
            ctx.state[RESPONSE_MODEL] = model
        for choice in chunk.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if reason:
                ctx.state.setdefault(FINISH_REASONS, []).append(reason)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        if isinstance(response, dict):
            if response.get("model"):
                ctx.state[RESPONSE_MODEL] = response["model"]
            reasons = [
                c.get("finish_reason")
                for c in response.get("choices") or ()
                if isinstance(c, dict) and c.get("finish_reason")
            ]
            if reasons:
                ctx.state[FINISH_REASONS] = reasons
            stop = response.get("stop_reason")  # an Anthropic Messages answer
            if stop and not reasons:
                ctx.state[FINISH_REASONS] = [stop]
        self._end(ctx, None)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self._end(ctx, error)

    def _end(self, ctx: RequestContext, error: GatewayError | None) -> None:
        span = ctx.state.pop(SPAN, None)
        if span is None:
            return
        operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
        charge = charge_of(ctx)
        usage = charge.usage
        # Each attribute costs CPU to set and to encode: the span's name
        # says the endpoint, and false or zero values are left out.
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "crabllm.key": key_name(ctx.principal),
            "http.response.status_code": ctx.status,
        }
        if ctx.stream:
            attrs["crabllm.stream"] = True
        if ctx.cache_hit:
            attrs["crabllm.cache_hit"] = True
        retries = ctx.state.get(ATTEMPTS, 0) - 1
        if retries > 0:
            attrs["crabllm.retries"] = retries
        if charge.cost_nanos:
            attrs["crabllm.cost_usd"] = charge.cost_nanos / NANOS_PER_USD
        if ctx.requested_model:
            attrs["gen_ai.request.model"] = ctx.requested_model
            span.update_name(f"{operation} {ctx.requested_model}")
        if ctx.provider:
            attrs["crabllm.deployment"] = ctx.provider
            p = self.gw.config.providers.get(ctx.provider)
            if p is not None:
                attrs["gen_ai.provider.name"] = PROVIDER_NAMES.get(p.kind, p.kind)
        model = ctx.state.get(RESPONSE_MODEL) or ctx.model
        if model:
            attrs["gen_ai.response.model"] = model
        reasons = ctx.state.get(FINISH_REASONS)
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = list(reasons)
        input_tokens = usage.input + usage.cache_read + usage.cache_write
        if error is None and (input_tokens or usage.output):
            attrs["gen_ai.usage.input_tokens"] = input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output
        span.set_attributes(attrs)
        if error is not None:
            span.set_attribute("error.type", error.code)
            span.set_status(Status(StatusCode.ERROR, error.message))
        span.end()
        self._measure(ctx, attrs, input_tokens, usage.output, error)

    def _measure(
        self,
        ctx: RequestContext,
        attrs: dict[str, Any],
        input_tokens: int,
        output_tokens: int,
        error: GatewayError | None,
    ) -> None:
        if self.duration is None:
            return
        labels = {
            k: attrs[k]
            for k in (
                "gen_ai.operation.name",
                "gen_ai.provider.name",
                "gen_ai.request.model",
                "gen_ai.response.model",
            )
            if k in attrs
        }
        if error is not None:
            labels["error.type"] = error.code
        self.duration.record(time.monotonic() - ctx.started, labels)
        if error is None and (input_tokens or output_tokens):
            self.token_usage.record(
                input_tokens, {**labels, "gen_ai.token.type": "input"}
            )
            self.token_usage.record(
                output_tokens, {**labels, "gen_ai.token.type": "output"}
            )

    def flush(self, timeout_ms: int = 10_000) -> None:
        """Export what is queued now (tests, shutdown)."""
        if self.provider is not None:
            self.provider.force_flush(timeout_ms)
        if self.meters is not None:
            self.meters.force_flush(timeout_ms)

    def close(self) -> None:
        if self.provider is not None:
            self.provider.shutdown()
        if self.meters is not None:
            self.meters.shutdown()
