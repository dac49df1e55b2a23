"""gunicorn server hooks: metrics directory, gateway log, shutdown, flush.

The master runs on_starting, child_exit and on_exit, so they import nothing
beyond the standard library; workers run post_worker_init and worker_exit.
"""

from __future__ import annotations

import gc
import glob
import logging
import os
import shutil
import sys
import tempfile
from typing import Any

# Seconds the master waits past shutdown_timeout before it SIGKILLs a worker:
# time for the worker to cut what is still streaming and flush its buffered
# usage records (it cuts with stop(timeout=1) at shutdown_timeout).
EXIT_MARGIN = 5

# Prometheus multiprocess mode: every worker writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR and /metrics sums them, so the numbers are the
# gateway's, not one worker's. The directory must be set before any worker
# imports prometheus_client and must start empty.

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_OWNED_DIR_ENV = "CRABLLM_OWNS_PROMETHEUS_DIR"


def on_starting(server: Any) -> None:
    """Master, before workers: request log to stderr, an empty metrics directory.

    The master never imports prometheus_client (2 MB it would hold for life):
    workers import it after the fork, with the directory already in their
    environment, so it starts in multiprocess mode there.
    """
    _log_to_stderr()
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        os.makedirs(path, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
    else:
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="crabllm-metrics-")
        os.environ[_OWNED_DIR_ENV] = "1"


def _log_to_stderr() -> None:
    """The gateway's own log lines (one per request) on stderr, as gunicorn's.

    Workers inherit the handler; [extensions.logging] level sets the level.
    """
    logger = logging.getLogger("crabllm_sync")
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
            "[%Y-%m-%d %H:%M:%S %z]",
        )
    )
    logger.addHandler(handler)
    logger.propagate = False
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def post_worker_init(worker: Any) -> None:
    """Worker: give in-flight requests shutdown_timeout, not the master's deadline.

    Gunicorn's master SIGKILLs workers at graceful_timeout, and a gevent worker
    waits for its requests up to that same setting, so it always lost the race
    and never ran worker_exit: its buffered usage records were lost. The worker
    now stops waiting EXIT_MARGIN seconds earlier, exits, and flushes.

    Also: the application is loaded by now, so its ~60,000 long-lived objects
    (modules, models, config) move out of the garbage collector's sight. A
    full collection over them took ~50 ms, a pause every request in flight in
    the worker would wait out at some point (the P99 target is 25 ms).
    """
    worker.cfg.set(
        "graceful_timeout", max(0, worker.cfg.graceful_timeout - EXIT_MARGIN)
    )
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Master: a worker is gone; drop its live gauges (active streams).

    What prometheus_client.multiprocess.mark_process_dead does, without
    importing it into the master: a live gauge is the file
    gauge_live<mode>_<pid>.db (test_serving_hooks checks the pattern against
    the installed prometheus_client). No import here also matters because
    this runs in the master's SIGCHLD handler: an import interrupted by a
    second worker's exit re-entered the half-imported package and made the
    master exit 1 (seen in CI). Whatever goes wrong is logged, never raised,
    since an exception here would escape into the arbiter's loop.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    try:
        pattern = os.path.join(glob.escape(path), f"gauge_live*_{worker.pid}.db")
        for name in glob.glob(pattern):
            os.remove(name)
    except Exception:  # noqa: BLE001 - see the docstring
        logging.getLogger("crabllm_sync").warning(
            "metrics: could not drop the gauges of worker %s",
            worker.pid,
            exc_info=True,
        )


def worker_exit(server: Any, worker: Any) -> None:
    """Worker, on its way out: flush buffered usage records and close storage."""
    wsgi = sys.modules.get("crabllm_sync.wsgi")
    app = getattr(wsgi, "application", None)
    gw = app.extensions.get("crabllm") if app is not None else None
    if gw is not None:
        gw.close()


def on_exit(server: Any) -> None:
    """Master, at shutdown: remove the metrics directory if we made it."""
    if os.environ.get(_OWNED_DIR_ENV) and os.environ.get(MULTIPROC_ENV):
        shutil.rmtree(os.environ[MULTIPROC_ENV], ignore_errors=True)
