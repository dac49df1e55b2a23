"""The GenAI client metrics over OTLP/HTTP (`metrics = true`; off by
default): gen_ai.client.token.usage and gen_ai.client.operation.duration,
exported by the SDK's periodic reader from its own thread. Recording is on
the request path (~30 us a record with the SDK), which is why it is opt-in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from crabllm_sync.errors import GatewayError
    from crabllm_sync.tracing.settings import OtelSettings

TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24)
LABELS = (
    "gen_ai.operation.name",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "error.type",
)


class GenAiMetrics:
    def __init__(self, settings: OtelSettings, resource: Resource) -> None:
        reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(
                endpoint=settings.metrics_endpoint,
                headers=settings.metrics_headers,
                timeout=settings.export_timeout,
            ),
            export_interval_millis=settings.metrics_interval * 1000,
        )
        # No exemplars: checking each measurement for one costs CPU on the
        # request path, and the spans carry the same figures.
        self.provider = MeterProvider(
            resource=resource,
            metric_readers=[reader],
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        meter = self.provider.get_meter("crabllm_sync")
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

    def record(
        self,
        attrs: dict[str, Any],
        seconds: float,
        input_tokens: int,
        output_tokens: int,
        error: GatewayError | None,
    ) -> None:
        """One request, from its span's attributes."""
        labels = {k: attrs[k] for k in LABELS if k in attrs}
        self.duration.record(seconds, labels)
        if error is None and (input_tokens or output_tokens):
            self.token_usage.record(
                input_tokens, {**labels, "gen_ai.token.type": "input"}
            )
            self.token_usage.record(
                output_tokens, {**labels, "gen_ai.token.type": "output"}
            )

    def flush(self, timeout_ms: int) -> None:
        self.provider.force_flush(timeout_ms)

    def close(self) -> None:
        self.provider.shutdown()
