"""gunicorn_settings(): the one definition of how the gateway is served.

Shared by `crabllm-sync serve` and gunicorn.conf.py so the two cannot drift.
The master imports only this module and gunicorn: the config is validated in a
forked child (master_view), so pydantic and the app never load in the master.
"""

from __future__ import annotations

import gc
import glob
import json
import logging
import os
import shutil
import sys
import tempfile
import traceback
from typing import Any

MAX_DEFAULT_WORKERS = 8
# Seconds the master waits past shutdown_timeout before it SIGKILLs a worker:
# time for the worker to cut what is still streaming and flush its buffered
# usage records (gunicorn's own check runs once a second, then stop(timeout=1)).
EXIT_MARGIN = 5


def default_workers(cores: int | None = None, env_value: str | None = None) -> int:
    """WEB_CONCURRENCY if set, else 2 x cores + 1, capped at 8."""
    if env_value:
        return max(1, int(env_value))
    cores = cores or os.cpu_count() or 1
    return min(2 * cores + 1, MAX_DEFAULT_WORKERS)


def master_view(path: str) -> tuple[str, int]:
    """(listen, shutdown_timeout) of the config at `path`, fully validated.

    Validation runs in a forked child that exits after answering, so the
    gunicorn master never imports pydantic or the config models (~10 MB it
    would hold for its whole life and never use). A bad config raises
    SystemExit with the same one-line message `crabllm-sync check` prints.
    Call it only while the process has one thread (gunicorn's config load).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: validate, answer, leave without cleanup
        os.close(read)
        code = 0
        try:
            from crabllm_sync.config import ConfigError, load_config

            try:
                config = load_config(path)
                answer = {"listen": config.listen, "timeout": config.shutdown_timeout}
            except ConfigError as exc:
                answer = {"error": f"crabllm-sync: {exc}"}
            os.write(write, json.dumps(answer).encode())
        except BaseException:  # noqa: BLE001 - must reach os._exit
            code = 1
            traceback.print_exc()  # a bug, not a bad config: show it
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data or os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"crabllm-sync: could not read the config {path}")
    answer = json.loads(data)
    if "error" in answer:
        raise SystemExit(answer["error"])
    return answer["listen"], int(answer["timeout"])


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


# -- gunicorn server hooks -------------------------------------------------------
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
