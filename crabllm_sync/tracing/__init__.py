"""OpenTelemetry traces (and optional metrics), off by default.

On when `[extensions.otel]` is in the config, or when the environment the
caller passes (wsgi.py: the process's) names an OTLP endpoint
(OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT) and OTEL_SDK_DISABLED is
not "true" (settings.py). This module, settings.py and propagate.py import
nothing of OpenTelemetry: the SDK is imported only when it is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from crabllm_sync.tracing.settings import OtelSettings, resolve

if TYPE_CHECKING:
    from flask import Flask

    from crabllm_sync.config import Config
    from crabllm_sync.gateway import Gateway


def settings(config: Config, env: Mapping[str, str]) -> OtelSettings | None:
    """The OpenTelemetry settings in force, or None when it is off."""
    return resolve(config.extensions.otel, env)


def install(app: Flask, gw: Gateway, env: Mapping[str, str]) -> None:
    """Trace `app`'s requests when OpenTelemetry is on; nothing otherwise."""
    wanted = settings(gw.config, env)
    if wanted is None:
        return
    from crabllm_sync.tracing.otel import Tracing

    Tracing(wanted, gw).install(app)
