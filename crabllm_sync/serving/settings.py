"""gunicorn_settings(): the one definition of how the gateway is served.

Shared by `crabllm-sync serve` and gunicorn.conf.py so the two cannot drift.
The master imports only this package and gunicorn: the config is validated in
a forked child (master_view.py), so pydantic and the app never load in the
master.
"""

from __future__ import annotations

import os
from typing import Any

from crabllm_sync.serving.hooks import (
    EXIT_MARGIN,
    child_exit,
    on_exit,
    on_starting,
    post_worker_init,
    worker_exit,
)

MAX_DEFAULT_WORKERS = 8


def default_workers(cores: int | None = None, env_value: str | None = None) -> int:
    """WEB_CONCURRENCY if set, else 2 x cores + 1, capped at 8."""
    if env_value:
        return max(1, int(env_value))
    cores = cores or os.cpu_count() or 1
    return min(2 * cores + 1, MAX_DEFAULT_WORKERS)


def gunicorn_settings(
    *,
    listen: str,
    workers: int,
    shutdown_timeout: int = 30,
    bind: str | None = None,
) -> dict[str, Any]:
    """Gunicorn settings: gevent workers, bind from config unless overridden."""
    return {
        # gunicorn's gevent worker, imported in workers only (serving/worker.py).
        "worker_class": "crabllm_sync.serving.worker.GeventWorker",
        "workers": workers,
        "bind": [bind or listen],
        "worker_connections": 2000,
        # The master's deadline; each worker cuts its streams at
        # shutdown_timeout itself (post_worker_init) and exits before it.
        "graceful_timeout": shutdown_timeout + EXIT_MARGIN,
        "timeout": 60,
        "keepalive": 75,  # longer than nginx's and most clients' idle timeouts
        "backlog": 2048,
        "accesslog": None,
        # When an access log is turned on (--access-logfile): the path without
        # its query string, where Google's clients may put the key (?key=).
        "access_log_format": '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" '
        '%(s)s %(b)s "%(f)s" "%(a)s"',
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "crabllm-sync",
        "forwarded_allow_ips": "127.0.0.1,::1",
        "on_starting": on_starting,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "worker_exit": worker_exit,
        "on_exit": on_exit,
    }
