"""Start and stop the servers the benchmark measures, and read their /proc numbers.

Mock upstream, the gateway under gunicorn (the repo's gunicorn.conf.py, 2 gevent
workers) and the bare pass-through; CPU seconds and RSS of a whole process tree.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.workloads import WORKLOADS

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def wait_http(
    port: int,
    proc: subprocess.Popen,
    method: str,
    path: str,
    body: bytes,
    timeout: float = 60.0,
) -> None:
    """Until `method path` answers 200 (gunicorn listens before workers load)."""
    import http.client

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            headers = {"content-type": "application/json"}
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                return
            last = f"HTTP {resp.status}"
        except OSError as exc:
            last = repr(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout}s: {last}")


def descendants(pid: int) -> list[int]:
    """pid and every process below it (scanning /proc for parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def memory_kb(pids: list[int], field: str = "VmRSS") -> int:
    """Sum of a /proc/PID/status memory field (VmRSS, VmHWM) in kB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


class Server:
    """A server subprocess; its tree's CPU and a sampled peak of its tree's RSS."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: dict[str, str], log: Path
    ) -> None:
        self.name = name
        self.port = port
        self._log = open(log, "wb")
        self.log_path = log
        self.proc = subprocess.Popen(
            argv,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            cwd=str(log.parent),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.peak_rss_kb = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    def wait_ready(self, probe: tuple[str, str, bytes] | None = None) -> Server:
        """Wait for the port, then (gunicorn) until a worker answers `probe`."""
        wait_port(self.port, self.proc)
        if probe is not None:
            wait_http(self.port, self.proc, *probe)
        return self

    def tree(self) -> list[int]:
        return descendants(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self.tree())

    def rss_kb(self) -> int:
        return memory_kb(self.tree())

    def hwm_kb(self) -> int:
        return memory_kb(self.tree(), "VmHWM")

    def start_sampling(self, every: float = 0.1) -> None:
        def sample() -> None:
            while not self._stop.wait(every):
                self.peak_rss_kb = max(self.peak_rss_kb, self.rss_kb())

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


def start_mock(workdir: Path, slow_ms: float = 50.0) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "bench.mock", "--port", str(port)]
    argv += ["--slow-ms", str(slow_ms)]
    return Server("mock", argv, port, {}, workdir / "mock.log").wait_ready()


def start_gateway(workdir: Path, config: Path, workers: int = 2) -> Server:
    """`gunicorn -c gunicorn.conf.py crabllm_sync.wsgi`, as the issue's deployment."""
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "crabllm_sync.wsgi",
    ]
    env = {"CRABLLM_CONFIG": str(config), "WEB_CONCURRENCY": str(workers)}
    server = Server("gateway", argv, port, env, workdir / "gateway.log")
    return server.wait_ready(("GET", "/health", b""))


def start_bare(
    workdir: Path, upstream: str, workers: int = 2, app: str = "bench.bare:application"
) -> Server:
    """bench/bare.py under gunicorn with the gateway's own worker settings."""
    from crabllm_sync.serving import gunicorn_settings

    s = gunicorn_settings(listen="127.0.0.1:0", workers=workers)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        s["worker_class"],
        "-w",
        str(workers),
        "--worker-connections",
        str(s["worker_connections"]),
        "--backlog",
        str(s["backlog"]),
        "--keep-alive",
        str(s["keepalive"]),
        "--bind",
        f"127.0.0.1:{port}",
        app,
    ]
    env = {"BENCH_UPSTREAM": upstream}
    name = app.split(":")[0].rsplit(".", 1)[-1]
    server = Server(name, argv, port, env, workdir / f"{name}.log")
    return server.wait_ready(
        ("POST", "/v1/chat/completions", WORKLOADS["chat-minimal"].body)
    )
