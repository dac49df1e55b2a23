"""Shared fixtures: configs, apps, real local upstreams and gateway servers."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

from crabllm_sync import serving
from crabllm_sync.app import create_app
from crabllm_sync.config import Config, parse_config
from tests import fuzzing
from tests.fakes import anthropic as fake_anthropic
from tests.fakes import openai as fake_openai
from tests.upstream import Upstream, serve_app

if TYPE_CHECKING:
    from tests.servers import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
HYPOTHESIS_PROFILE = fuzzing.load()


def pytest_report_header() -> str:
    return f"hypothesis profile: {HYPOTHESIS_PROFILE} ($HYPOTHESIS_PROFILE)"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A local OpenAI-compatible upstream."""
    up = fake_openai.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture
def anthropic_upstream() -> Iterator[Upstream]:
    """A local Anthropic Messages upstream."""
    up = fake_anthropic.make_upstream().start()
    yield up
    up.stop()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for a test module; skips when none can start."""
    from tests.servers import PostgresServer, Unavailable  # servers imports us

    try:
        server = PostgresServer()
    except Unavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.destroy()


def make_config(data: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    return parse_config(data, env or {})


def openai_provider(up: Upstream, models: list[str], **over: Any) -> dict[str, Any]:
    return {
        "kind": "openai",
        "base_url": f"{up.url}/v1",
        "api_key": "sk-upstream",
        "models": models,
        "max_retries": 0,
        "timeout": 5,
        **over,
    }


def anthropic_provider(up: Upstream, models: list[str], **over: Any) -> dict[str, Any]:
    return {
        "kind": "anthropic",
        "base_url": f"{up.url}/v1",
        "api_key": "sk-ant-upstream",
        "models": models,
        "max_retries": 0,
        "timeout": 5,
        **over,
    }


@pytest.fixture
def app_factory() -> Iterator[Callable[[Config], Any]]:
    """create_app for a test; each app's gateway is closed at teardown (as a
    worker's is at exit), so no flusher outlives its test."""
    apps = []

    def make(config: Config, **kw: Any) -> Any:
        app = create_app(config, **kw)
        app.testing = True
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["crabllm"].close()


def sdk_for_app(app: Any, api_key: str = "sk-none") -> openai.OpenAI:
    """The official openai SDK talking to the Flask app in-process (WSGI)."""
    http = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://gw")
    return openai.OpenAI(
        api_key=api_key, base_url="http://gw/v1", http_client=http, max_retries=0
    )


@pytest.fixture
def served() -> Iterator[Callable[[Any], str]]:
    """Serve an app on a real socket (threaded werkzeug); returns its base URL."""
    servers = []

    def serve(app: Any) -> str:
        server, url = serve_app(app)
        servers.append(server)
        return url

    yield serve
    for s in servers:
        s.shutdown()
        s.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# shutdown_timeout of a test server whose config sets none: after a test,
# nothing is in flight but keep-alive connections its clients left open, and
# a worker waits shutdown_timeout for those (the 30 s default) before exiting.
TEST_SHUTDOWN_TIMEOUT = 1
# The master's line once it has bound its socket.
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+) ")


class GunicornServer:
    """`gunicorn -c gunicorn.conf.py crabllm_sync.wsgi` as a subprocess.

    A config without `shutdown_timeout` is served with TEST_SHUTDOWN_TIMEOUT
    (a test about shutdown sets its own); stop() is SIGTERM and a wait.
    gunicorn binds port 0 itself and logs the port it got: a port picked
    free beforehand could be taken (by any outgoing connection) before
    gunicorn binds it.
    """

    def __init__(
        self, config_path: Path, workers: int = 2, env: dict[str, str] | None = None
    ):
        self.port = 0
        self.url = ""
        # PYTHONPATH: the code under test is this checkout's, whatever is installed.
        full_env = {
            **os.environ,
            "CRABLLM_CONFIG": str(config_path),
            "WEB_CONCURRENCY": str(workers),
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.log_path = config_path.with_suffix(".log")
        self._log = open(self.log_path, "wb")
        argv = ["-c", str(ROOT / "gunicorn.conf.py")]
        argv += ["--bind", "127.0.0.1:0"]
        if "shutdown_timeout" not in tomllib.loads(config_path.read_text()):
            # What gunicorn.conf.py derives from shutdown_timeout (serving.py).
            graceful = TEST_SHUTDOWN_TIMEOUT + serving.EXIT_MARGIN
            argv += ["--graceful-timeout", str(graceful)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *argv, "crabllm_sync.wsgi"],
            cwd=str(config_path.parent),
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log()}")
            if not self.port:
                bound = LISTENING.search(self.log())
                if bound is None:
                    time.sleep(0.05)
                    continue
                self.port = int(bound.group(1))
                self.url = f"http://127.0.0.1:{self.port}"
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not become ready: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def gunicorn() -> Iterator[Callable[..., GunicornServer]]:
    started: list[GunicornServer] = []

    def start(config_path: Path, workers: int = 2, env: dict[str, str] | None = None):
        srv = GunicornServer(config_path, workers, env)
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path
