"""Gunicorn config: `gunicorn -c gunicorn.conf.py crabllm_sync.wsgi`.

Settings come from crabllm_sync.serving, shared with `crabllm-sync serve`.
"""

import os

from crabllm_sync.config import ConfigError, load_config
from crabllm_sync.serving import default_workers, gunicorn_settings

try:
    _config = load_config(os.environ.get("CRABLLM_CONFIG", "crabllm.toml"))
except ConfigError as _exc:
    raise SystemExit(f"crabllm-sync: {_exc}") from None

globals().update(
    gunicorn_settings(
        listen=_config.listen,
        workers=default_workers(env_value=os.environ.get("WEB_CONCURRENCY")),
        shutdown_timeout=_config.shutdown_timeout,
    )
)
