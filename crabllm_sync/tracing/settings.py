"""The OpenTelemetry settings in force: `[extensions.otel]` over the standard
OTEL_* variables of an environment the caller passes in (wsgi.py passes
os.environ; nothing here reads the process environment). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

from crabllm_sync.config import OtelExtension

ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
DEFAULT_ENDPOINT = "http://localhost:4318"
SERVICE_NAME = "crabllm-sync"


@dataclass(frozen=True)
class OtelSettings:
    traces: bool
    metrics: bool
    traces_endpoint: str
    metrics_endpoint: str
    traces_headers: dict[str, str] = field(default_factory=dict)
    metrics_headers: dict[str, str] = field(default_factory=dict)
    # service.name and OTEL_RESOURCE_ATTRIBUTES.
    resource: dict[str, str] = field(default_factory=dict)
    sample_ratio: float = 1.0
    export_timeout: float = 10.0
    metrics_interval: float = 60.0
    # The batch span processor (OTEL_BSP_*).
    schedule_delay_ms: int = 5000
    max_queue_size: int = 2048
    max_export_batch_size: int = 512


def resolve(
    section: OtelExtension | None, env: Mapping[str, str]
) -> OtelSettings | None:
    """The settings in force, or None when OpenTelemetry is off: on with the
    config section, or with an OTLP endpoint in `env`; off whatever the config
    says with OTEL_SDK_DISABLED=true."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if section is None:
        if not any(env.get(name) for name in ENV_ENDPOINTS):
            return None
        section = OtelExtension()
    return OtelSettings(
        traces=section.traces,
        metrics=section.metrics,
        traces_endpoint=_endpoint(section, env, "TRACES", "v1/traces"),
        metrics_endpoint=_endpoint(section, env, "METRICS", "v1/metrics"),
        traces_headers=_headers(section, env, "TRACES"),
        metrics_headers=_headers(section, env, "METRICS"),
        resource=_resource(section, env),
        sample_ratio=section.sample_ratio,
        export_timeout=section.export_timeout,
        metrics_interval=section.metrics_interval,
        schedule_delay_ms=_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000),
        max_queue_size=_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048),
        max_export_batch_size=_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512),
    )


def _endpoint(
    section: OtelExtension, env: Mapping[str, str], signal: str, path: str
) -> str:
    """The config's base URL plus the signal's path; else the signal's own
    variable as it is; else the general variable plus the path (the OTLP
    exporter specification's order)."""
    if section.endpoint:
        return f"{section.endpoint.rstrip('/')}/{path}"
    own = env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "").strip()
    if own:
        return own
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_ENDPOINT
    return f"{base.rstrip('/')}/{path}"


def _headers(
    section: OtelExtension, env: Mapping[str, str], signal: str
) -> dict[str, str]:
    if section.headers:
        return dict(section.headers)
    raw = env.get(f"OTEL_EXPORTER_OTLP_{signal}_HEADERS") or env.get(
        "OTEL_EXPORTER_OTLP_HEADERS", ""
    )
    return _pairs(raw)


def _resource(section: OtelExtension, env: Mapping[str, str]) -> dict[str, str]:
    attrs = _pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    name = (
        section.service_name
        or env.get("OTEL_SERVICE_NAME", "").strip()
        or attrs.get("service.name")
        or SERVICE_NAME
    )
    return {**attrs, "service.name": name}


def _pairs(raw: str) -> dict[str, str]:
    """`k1=v1,k2=v2` with percent-encoded values (OTEL_*_HEADERS,
    OTEL_RESOURCE_ATTRIBUTES); malformed members are skipped."""
    out: dict[str, str] = {}
    for member in raw.split(","):
        key, sep, value = member.partition("=")
        key = key.strip()
        if sep and key:
            out[unquote(key)] = unquote(value.strip())
    return out


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    try:
        value = int(env.get(name, "").strip() or default)
    except ValueError:
        return default
    return value if value > 0 else default
