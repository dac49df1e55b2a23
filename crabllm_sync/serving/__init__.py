"""How the gateway is served: gunicorn settings, server hooks, the worker.

- settings: gunicorn_settings(), shared by `crabllm-sync serve` and
  gunicorn.conf.py so the two cannot drift;
- hooks: gunicorn server hooks (metrics directory, logs, shutdown, flush);
- master_view: the config's `listen` and `shutdown_timeout`, validated in a
  forked child;
- gunicorn_conf: the settings module (`-c python:crabllm_sync.serving.gunicorn_conf`);
- worker: the worker class the master sees (no gevent in the master);
- gevent_worker: the worker as it runs after the fork.

The master imports this package: it must stay free of gevent, pydantic and
the application (tests check the master's memory maps).
"""

from crabllm_sync.serving.hooks import (
    _OWNED_DIR_ENV,  # noqa: F401 - read by tests/unit/test_serving_hooks.py
    EXIT_MARGIN,
    MULTIPROC_ENV,
    child_exit,
    on_exit,
    on_starting,
    post_worker_init,
    worker_exit,
)
from crabllm_sync.serving.master_view import master_view
from crabllm_sync.serving.settings import default_workers, gunicorn_settings

__all__ = [
    "EXIT_MARGIN",
    "MULTIPROC_ENV",
    "child_exit",
    "default_workers",
    "gunicorn_settings",
    "master_view",
    "on_exit",
    "on_starting",
    "post_worker_init",
    "worker_exit",
]
