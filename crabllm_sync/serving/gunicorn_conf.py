"""Gunicorn settings module: `gunicorn -c python:crabllm_sync.serving.gunicorn_conf`.

The repository's gunicorn.conf.py re-exports it (and so does the older name
crabllm_sync.gunicorn_conf). The master reads only
`listen` and `shutdown_timeout` of $CRABLLM_CONFIG (validated in a child).
"""

import os

from crabllm_sync.serving.master_view import master_view
from crabllm_sync.serving.settings import default_workers, gunicorn_settings

_workers = default_workers(env_value=os.environ.get("WEB_CONCURRENCY"))
_listen, _shutdown_timeout = master_view(
    os.environ.get("CRABLLM_CONFIG", "crabllm.toml"), workers=_workers
)

globals().update(
    gunicorn_settings(
        listen=_listen,
        workers=_workers,
        shutdown_timeout=_shutdown_timeout,
    )
)
