"""gunicorn_settings(): the one definition of how the gateway is served.

Shared by `crabllm-sync serve` and gunicorn.conf.py so the two cannot drift.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

MAX_DEFAULT_WORKERS = 8


def default_workers(cores: int | None = None, env_value: str | None = None) -> int:
    """WEB_CONCURRENCY if set, else 2 x cores + 1, capped at 8."""
    if env_value:
        return max(1, int(env_value))
    cores = cores or multiprocessing.cpu_count()
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
        "worker_class": "gevent",
        "workers": workers,
        "bind": [bind or listen],
        "worker_connections": 2000,
        "graceful_timeout": shutdown_timeout,
        "timeout": 60,
        "keepalive": 75,  # longer than nginx's and most clients' idle timeouts
        "backlog": 2048,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
        "proc_name": "crabllm-sync",
        "forwarded_allow_ips": "127.0.0.1,::1",
    }
