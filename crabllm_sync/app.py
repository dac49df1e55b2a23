"""create_app(config): build the Gateway, register blueprints and error handlers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, request

from crabllm_sync import errors, overhead, tracing
from crabllm_sync.config import Config
from crabllm_sync.errors import GatewayError
from crabllm_sync.formats.gemini import to_google
from crabllm_sync.gateway import Gateway
from crabllm_sync.storage import Storage, open_storage
from crabllm_sync.views import admin as admin_views
from crabllm_sync.views import anthropic as anthropic_views
from crabllm_sync.views import console as console_views
from crabllm_sync.views import docs as docs_views
from crabllm_sync.views import gemini as gemini_views
from crabllm_sync.views import logs as logs_views
from crabllm_sync.views import openai as openai_views
from crabllm_sync.views import openapi as openapi_views
from crabllm_sync.views import ops as ops_views
from crabllm_sync.views import providers as provider_views
from crabllm_sync.views import register_error_handlers
from crabllm_sync.views import responses_api as responses_views
from crabllm_sync.views import usage as usage_views

log = logging.getLogger(__name__)


def create_app(
    config: Config,
    *,
    storage: Storage | None = None,
    config_file: str = "the config file",
    env: Mapping[str, str] | None = None,
) -> Flask:
    """A Flask app serving `config` (read from `config_file`); the Gateway is
    at app.extensions['crabllm']. `env` is the environment whose standard
    OTEL_* variables configure tracing (wsgi.py passes the process's; none:
    only the config does)."""
    app = Flask("crabllm_sync")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_size
    gw = Gateway(
        config,
        storage if storage is not None else open_storage(config),
        config_file=config_file,
    )
    app.extensions["crabllm"] = gw

    app.register_blueprint(openai_views.make_blueprint(gw))
    app.register_blueprint(ops_views.make_blueprint(gw))
    app.register_blueprint(admin_views.make_blueprint(gw))
    app.register_blueprint(provider_views.make_blueprint(gw))
    app.register_blueprint(anthropic_views.make_blueprint(gw))
    app.register_blueprint(gemini_views.make_blueprint(gw))
    app.register_blueprint(openapi_views.make_blueprint(gw))
    app.register_blueprint(usage_views.make_blueprint(gw))
    app.register_blueprint(responses_views.make_blueprint(gw))
    app.register_blueprint(logs_views.make_blueprint(gw))
    app.register_blueprint(console_views.make_blueprint(gw))
    app.register_blueprint(docs_views.make_blueprint())

    register_error_handlers(app, errors.to_openai, lambda: _render_for(request.path))
    overhead.install(app, gw)
    tracing.install(app, gw, {} if env is None else env)

    for warning in config.warnings():
        log.warning(warning)
    gw.auth.log_startup()
    return app


ANTHROPIC_PATH = "/v1/messages"


def _render_for(path: str) -> Callable[[GatewayError], Any]:
    """The error shape a client of `path` reads, for errors raised before routing
    (405, 404 under /v1/messages or /v1beta): Anthropic's or Google's there,
    OpenAI's elsewhere."""
    if path == ANTHROPIC_PATH or path.startswith(ANTHROPIC_PATH + "/"):
        return errors.to_anthropic
    if path.startswith(gemini_views.PREFIX + "/"):
        return to_google
    return errors.to_openai
