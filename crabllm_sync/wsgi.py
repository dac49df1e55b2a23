"""WSGI entry: `gunicorn -k gevent crabllm_sync.wsgi` serves $CRABLLM_CONFIG."""

from __future__ import annotations

import os

from crabllm_sync.app import create_app
from crabllm_sync.config import ConfigError, load_config

try:
    _config = load_config(os.environ.get("CRABLLM_CONFIG", "crabllm.toml"))
except ConfigError as exc:
    raise SystemExit(f"crabllm-sync: {exc}") from None

application = create_app(_config)
