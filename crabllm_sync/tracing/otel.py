"""OpenTelemetry at work: one span per request, one child span per upstream
attempt, GenAI semantic-convention attributes (and optional metrics),
exported over OTLP/HTTP by the SDK's BatchSpanProcessor (its own thread,
never the request path: a dead collector only fills and drops its bounded
queue).

Cheap by construction (docs/otel.md, bench/otel_cost.py): spans are a few
ints while the request runs (spans.py) and become the SDK's ReadableSpan,
all attributes at once, when they end; a sampled-out request builds no
attributes; the exporter writes OTLP's protobuf directly (otlp.py).

The request span is a child of the client's `traceparent` when it sends one;
each attempt's upstream request carries a `traceparent` naming the attempt's
span (propagate.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flask import Flask, g, has_request_context, request
from opentelemetry.sdk.resources import (
    TELEMETRY_SDK_LANGUAGE,
    TELEMETRY_SDK_NAME,
    TELEMETRY_SDK_VERSION,
    Resource,
)
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.sdk.version import __version__ as sdk_version
from opentelemetry.trace import SpanKind, Status, StatusCode

from crabllm_sync.extensions import Extension, key_name
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.pricing import NANOS_PER_USD
from crabllm_sync.tracing import propagate, spans
from crabllm_sync.tracing.export import OtlpHttpSpanExporter

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError
    from crabllm_sync.gateway import Gateway
    from crabllm_sync.routing import Deployment
    from crabllm_sync.tracing.settings import OtelSettings

SPAN = "otel.span"
ATTEMPTS = "otel.attempts"
RESPONSE_MODEL = "otel.response_model"
FINISH_REASONS = "otel.finish_reasons"
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


class Tracing(Extension):
    name = "otel"

    def __init__(self, settings: OtelSettings, gw: Gateway) -> None:
        self.gw = gw
        self.resource = Resource(
            {
                TELEMETRY_SDK_LANGUAGE: "python",
                TELEMETRY_SDK_NAME: "opentelemetry",
                TELEMETRY_SDK_VERSION: sdk_version,
                **settings.resource,
            }
        )
        self.scope = InstrumentationScope("crabllm_sync")
        self.sampler = spans.Sampler(settings.sample_ratio)
        self.processor: BatchSpanProcessor | None = None
        if settings.traces:
            exporter = OtlpHttpSpanExporter(
                settings.traces_endpoint,
                settings.traces_headers,
                settings.export_timeout,
            )
            self.processor = BatchSpanProcessor(
                exporter,
                max_queue_size=settings.max_queue_size,
                schedule_delay_millis=settings.schedule_delay_ms,
                max_export_batch_size=settings.max_export_batch_size,
                export_timeout_millis=settings.export_timeout * 1000,
            )
        self.metrics = None
        if settings.metrics:
            from crabllm_sync.tracing.metrics import GenAiMetrics

            self.metrics = GenAiMetrics(settings, self.resource)

    def install(self, app: Flask) -> None:
        gw = self.gw
        gw.extensions.append(self)
        gw.on_begin.append(self.begin)
        if self.processor is not None:
            gw.attempt_scope = self.attempt

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
        headers = request.headers
        header = headers.get("traceparent")
        parent = None
        if header:  # most clients send none
            parent = spans.parse_traceparent(header, headers.get("tracestate"))
        # The span starts with the request's context (wall clock, from it).
        start = time.time_ns() - int((time.monotonic() - ctx.started) * 1e9)
        ctx.state[SPAN] = (self.sampler.root(start, parent), parent)
        setattr(g, _CONTEXT, ctx)

    @contextmanager
    def attempt(self, ctx: RequestContext, dep: Deployment) -> Iterator[None]:
        """A child span around one upstream attempt; its traceparent goes
        upstream with the attempt's request."""
        entry = ctx.state.get(SPAN)
        if entry is None:
            yield
            return
        root = entry[0]
        number = ctx.state[ATTEMPTS] = ctx.state.get(ATTEMPTS, 0) + 1
        span = spans.child(root, time.time_ns())
        token = propagate.enter(span.traceparent(), span.tracestate())
        status = spans.UNSET
        error_type = None
        try:
            yield
        except BaseException as exc:
            if span.sampled:
                code = getattr(exc, "upstream_status", None)
                error_type = str(code or type(exc).__name__)
                message = getattr(exc, "message", "") or type(exc).__name__
                status = Status(StatusCode.ERROR, self.gw.redact(message))
            raise
        finally:
            propagate.leave(token)
            if span.sampled and self.processor is not None:
                operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
                attrs: dict[str, Any] = {
                    "gen_ai.operation.name": operation,
                    "gen_ai.provider.name": PROVIDER_NAMES.get(dep.kind, dep.kind),
                    "gen_ai.request.model": dep.model,
                    "crabllm.deployment": dep.provider,
                    "crabllm.attempt": number,
                }
                if error_type is not None:
                    attrs["error.type"] = error_type
                self.processor.on_end(
                    spans.finished(
                        span,
                        root.context(),
                        f"{operation} {dep.model}",
                        SpanKind.CLIENT,
                        attrs,
                        time.time_ns(),
                        status,
                        self.resource,
                        self.scope,
                    )
                )

    # -- the finish path -------------------------------------------------------------

    def _recording(self, ctx: RequestContext) -> bool:
        """Whether the request's outcome is wanted: by its sampled span, or
        by the metrics (recorded for every request)."""
        entry = ctx.state.get(SPAN)
        return entry is not None and (entry[0].sampled or self.metrics is not None)

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        if not isinstance(chunk, dict) or not self._recording(ctx):
            return
        if RESPONSE_MODEL not in ctx.state:
            model = chunk.get("model")
            if model:
                ctx.state[RESPONSE_MODEL] = model
        for choice in chunk.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if reason:
                ctx.state.setdefault(FINISH_REASONS, []).append(reason)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        if isinstance(response, dict) and self._recording(ctx):
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
        entry = ctx.state.pop(SPAN, None)
        if entry is None:
            return
        root, parent = entry
        if not root.sampled and self.metrics is None:
            return  # sampled out: nothing to build
        end = time.time_ns()
        operation = OPERATIONS.get(ctx.endpoint, ctx.endpoint)
        charge = charge_of(ctx)
        usage = charge.usage
        # Each attribute costs CPU to set and to encode: the span's name
        # says the endpoint, and false or zero values are left out.
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "crabllm.key": key_name(ctx.principal),
            "crabllm.request_id": ctx.request_id,
            "http.response.status_code": ctx.status,
        }
        name = ctx.endpoint
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
            name = f"{operation} {ctx.requested_model}"
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
            attrs["gen_ai.response.finish_reasons"] = tuple(reasons)
        input_tokens = usage.input + usage.cache_read + usage.cache_write
        if error is None and (input_tokens or usage.output):
            attrs["gen_ai.usage.input_tokens"] = input_tokens
            attrs["gen_ai.usage.output_tokens"] = usage.output
        status = spans.UNSET
        if error is not None:
            attrs["error.type"] = error.code
            status = Status(StatusCode.ERROR, error.message)
        if root.sampled and self.processor is not None:
            self.processor.on_end(
                spans.finished(
                    root,
                    parent,
                    name,
                    SpanKind.SERVER,
                    attrs,
                    end,
                    status,
                    self.resource,
                    self.scope,
                )
            )
        if self.metrics is not None:
            seconds = time.monotonic() - ctx.started
            self.metrics.record(attrs, seconds, input_tokens, usage.output, error)

    def flush(self, timeout_ms: int = 10_000) -> None:
        """Export what is queued now (tests, shutdown)."""
        if self.processor is not None:
            self.processor.force_flush(timeout_ms)
        if self.metrics is not None:
            self.metrics.flush(timeout_ms)

    def close(self) -> None:
        if self.processor is not None:
            self.processor.shutdown()
        if self.metrics is not None:
            self.metrics.close()
