"""OpenTelemetry traces and metrics, off by default.

On when `[extensions.otel]` is in the config, or when the environment names an
OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) and
OTEL_SDK_DISABLED is not "true". This module and propagate.py import nothing
of OpenTelemetry: otel.py (the SDK) is imported only when it is on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from crabllm_sync.config import OtelExtension

if TYPE_CHECKING:
    from flask import Flask

    from crabllm_sync.config import Config
    from crabllm_sync.gateway import Gateway

ENV_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def settings(config: Config, env: Mapping[str, str]) -> OtelExtension | None:
    """The OpenTelemetry settings in force, or None when it is off."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if config.extensions.otel is not None:
        return config.extensions.otel
    if any(env.get(name) for name in ENV_ENDPOINTS):
        return OtelExtension()
    return None


def install(app: Flask, gw: Gateway, env: Mapping[str, str] | None = None) -> None:
    """Trace `app`'s requests when OpenTelemetry is on; nothing otherwise."""
    wanted = settings(gw.config, os.environ if env is None else env)
    if wanted is None:
        return
    from crabllm_sync.tracing.otel import Tracing

    Tracing(wanted, gw).install(app)
