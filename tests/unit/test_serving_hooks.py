"""gunicorn hooks: the Prometheus multiprocess directory is set and cleaned."""

from __future__ import annotations

import gc
import logging
import os
import sys
import types

import pytest

from crabllm_sync import serving
from crabllm_sync.extensions import find
from crabllm_sync.extensions.usage import UsageRecorder
from tests.conftest import make_config


@pytest.fixture
def env(monkeypatch):
    # on_starting writes os.environ itself: setenv first so that teardown
    # puts back what was there (delenv of an absent name records nothing).
    for name in (serving.MULTIPROC_ENV, serving._OWNED_DIR_ENV):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    # on_starting sets the directory: imported first here, without it, this
    # process's metrics stay single-process for the in-process tests that
    # follow, whatever order they run in.
    import prometheus_client  # noqa: F401

    logger = logging.getLogger("crabllm_sync")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield monkeypatch
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_settings_carry_the_hooks():
    s = serving.gunicorn_settings(listen="127.0.0.1:1", workers=2)
    assert s["on_starting"] is serving.on_starting
    assert s["child_exit"] is serving.child_exit
    assert s["worker_exit"] is serving.worker_exit
    assert s["on_exit"] is serving.on_exit


def test_on_starting_makes_a_directory_and_on_exit_removes_it(env):
    serving.on_starting(None)
    path = os.environ[serving.MULTIPROC_ENV]
    assert os.path.isdir(path) and os.listdir(path) == []
    serving.on_exit(None)
    assert not os.path.exists(path)


def test_a_given_directory_is_emptied_of_old_samples_and_kept(env, tmp_path):
    (tmp_path / "counter_123.db").write_bytes(b"old")
    (tmp_path / "notes.txt").write_text("not ours")
    env.setenv(serving.MULTIPROC_ENV, str(tmp_path))
    serving.on_starting(None)
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]
    serving.on_exit(None)
    assert tmp_path.exists()  # not ours to remove


def test_worker_exit_flushes_the_workers_usage_and_needs_no_app(
    monkeypatch, tmp_path, app_factory
):
    """worker_exit writes the usage rows the worker's app still buffers; in a
    process that never loaded the app it has nothing to do and raises nothing."""
    monkeypatch.delitem(sys.modules, "crabllm_sync.wsgi", raising=False)
    assert serving.worker_exit(None, None) is None

    app = app_factory(
        make_config(
            {
                "providers": {"local": {"kind": "mock", "models": ["mock"]}},
                "extensions": {"usage": {"flush_interval": 3600}},
                "storage": {"kind": "memory", "database": f"sqlite:///{tmp_path}/u.db"},
            }
        )
    )
    chat = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
    assert app.test_client().post("/v1/chat/completions", json=chat).status_code == 200
    recorder = find(app.extensions["crabllm"].extensions, UsageRecorder)
    assert recorder is not None and recorder.pending() == 1
    wsgi = types.ModuleType("crabllm_sync.wsgi")  # as gunicorn's worker loads it
    wsgi.application = app
    monkeypatch.setitem(sys.modules, "crabllm_sync.wsgi", wsgi)
    serving.worker_exit(None, None)
    assert recorder.pending() == 0
    assert recorder.db.m.UsageRecord.select().count() == 1


def test_on_starting_sends_gateway_logs_to_stderr_once(env):
    logger = logging.getLogger("crabllm_sync")
    logger.handlers.clear()
    serving.on_starting(None)
    serving.on_starting(None)
    assert len(logger.handlers) == 1
    assert logger.getEffectiveLevel() == logging.INFO
    serving.on_exit(None)


def test_workers_stop_waiting_before_the_master_kills_them():
    """The master SIGKILLs at graceful_timeout; a worker must cut its streams
    at shutdown_timeout and exit (flushing usage) before that."""
    from gunicorn.config import Config

    s = serving.gunicorn_settings(listen="127.0.0.1:1", workers=1, shutdown_timeout=7)
    assert s["graceful_timeout"] == 7 + serving.EXIT_MARGIN
    cfg = Config()
    cfg.set("graceful_timeout", s["graceful_timeout"])

    class Worker:
        pass

    worker = Worker()
    worker.cfg = cfg
    try:
        s["post_worker_init"](worker)
        assert worker.cfg.graceful_timeout == 7
        # and the loaded app's objects are out of the collector's full passes
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


def test_the_master_leaves_metrics_to_workers_and_drops_a_dead_ones_gauges():
    """A fresh interpreter plays master then worker. The master never imports
    prometheus_client; a worker that imports it after on_starting counts in
    multiprocess mode (in the shared directory: /metrics sums the workers);
    when that worker is gone, child_exit removes the live gauge files the
    installed prometheus_client wrote for it and keeps its counters (they
    still count toward the totals)."""
    import subprocess
    import sys

    code = (
        "import os, sys\n"
        "from crabllm_sync import serving\n"
        "serving.on_starting(None)\n"
        "assert 'prometheus_client' not in sys.modules, 'master imported it'\n"
        "import prometheus_client\n"
        "from prometheus_client import values\n"
        "assert values.ValueClass._multiprocess, 'workers would count alone'\n"
        "g = prometheus_client.Gauge('g', 'g', multiprocess_mode='livesum')\n"
        "g.set(3)\n"
        "prometheus_client.Counter('c', 'c').inc()\n"
        "path = os.environ[serving.MULTIPROC_ENV]\n"
        "before = sorted(os.listdir(path))\n"
        "class Worker:\n"
        "    pid = os.getpid()\n"
        "serving.child_exit(None, Worker())\n"
        "after = sorted(os.listdir(path))\n"
        "serving.on_exit(None)\n"
        "print(before, after)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != serving.MULTIPROC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    pid = done.stdout.split("'counter_")[1].split(".db")[0]
    assert done.stdout.strip() == (
        f"['counter_{pid}.db', 'gauge_livesum_{pid}.db'] ['counter_{pid}.db']"
    )


def test_child_exit_logs_a_failure_instead_of_raising(env, tmp_path, caplog):
    gauge = tmp_path / "gauge_livesum_4242.db"
    gauge.write_bytes(b"")
    env.setenv(serving.MULTIPROC_ENV, str(tmp_path))

    class Worker:
        pid = 4242

    serving.child_exit(None, Worker())
    assert not gauge.exists()  # the dead worker's live gauge is dropped

    env.setenv(serving.MULTIPROC_ENV, str(tmp_path / "gone"))
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "gauge_livesum_4242.db").mkdir()  # os.remove fails
    logging.getLogger("crabllm_sync").propagate = True
    with caplog.at_level(logging.WARNING, logger="crabllm_sync"):
        serving.child_exit(None, Worker())
    assert "could not drop the gauges of worker 4242" in caplog.text


def test_memory_storage_with_several_workers_is_named_at_start(tmp_path, capsys):
    from crabllm_sync.serving.master_view import master_view

    path = tmp_path / "crabllm.toml"
    path.write_text('listen = "127.0.0.1:9"\n[storage]\nkind = "memory"\n')
    assert master_view(str(path), workers=2) == ("127.0.0.1:9", 30)
    warning = capsys.readouterr().err
    assert "memory" in warning and "2 workers" in warning
    assert "admin key API is refused" in warning
    master_view(str(path), workers=1)
    assert capsys.readouterr().err == ""
    path.write_text('listen = "127.0.0.1:9"\n[storage]\nkind = "sqlite"\n')
    master_view(str(path), workers=4)
    assert capsys.readouterr().err == ""
