"""WSGI entry: `gunicorn -k gevent crabllm_sync.wsgi` serves $CRABLLM_CONFIG."""

from __future__ import annotations

import os

from crabllm_sync.app import create_app
from crabllm_sync.config import ConfigError, load_config

_path = os.environ.get("CRABLLM_CONFIG", "crabllm.toml")
try:
    _config = load_config(_path)
except ConfigError as exc:
    raise SystemExit(f"crabllm-sync: {exc}") from None

application = create_app(_config, config_file=_path, env=os.environ)
