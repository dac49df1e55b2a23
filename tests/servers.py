"""Real redis-server and PostgreSQL for tests: free 127.0.0.1 ports, stopped after.

Each helper raises Unavailable (tests skip with its reason) when the system
binary is missing or cannot run here. RedisServer.stop()/start() on the same
port simulate an outage and a recovery.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.conftest import ROOT, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NGINX = shutil.which("nginx") or (
    "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
)


class Unavailable(Exception):
    """The server cannot run on this machine; the message says why."""


def wait_for(check, timeout: float = 20.0, what: str = "condition") -> None:  # noqa: ANN001
    """Poll `check()` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


class RedisServer:
    """`redis-server` with no persistence, on a free port."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server")
        if not self.binary:
            raise Unavailable(
                "redis-server is not installed (apt install redis-server)"
            )
        self.proc: subprocess.Popen[bytes] | None = None
        # A port found free may be taken before redis binds it: then redis
        # exits at once, and a second port is tried. (Restarts after an
        # outage keep the port: that is what they simulate.)
        for attempt in range(3):
            self.port = free_port()
            self.url = f"redis://127.0.0.1:{self.port}/0"
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == 2:
                    raise

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, what=f"redis-server on port {self.port}")

    def ping(self) -> bool:
        import redis

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
        try:
            with redis.Redis.from_url(self.url, socket_timeout=0.5) as r:
                return bool(r.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class PostgresServer:
    """A throw-away PostgreSQL cluster (initdb in a temp dir), run unprivileged."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise Unavailable(f"PostgreSQL binaries not found in {PG_BIN}")
        self.run_as = self._user()
        self.dir = Path(tempfile.mkdtemp(prefix="crabllm-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://gw@127.0.0.1:{self.port}/postgres"
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "gw",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )
        self.start()

    @staticmethod
    def _user() -> str | None:
        """PostgreSQL refuses root: run it as `postgres` (created if missing)."""
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            made = subprocess.run(
                ["useradd", "--system", "--no-create-home", "postgres"],
                capture_output=True,
            )
            if made.returncode != 0:
                raise Unavailable(
                    "running as root and cannot create the postgres user: "
                    + made.stderr.decode(errors="replace")
                ) from None
        if not shutil.which("runuser"):
            raise Unavailable("running as root and runuser is missing")
        return "postgres"

    def _run(self, argv: list[str]) -> None:
        if self.run_as:
            argv = ["runuser", "-u", self.run_as, "--", *argv]
        done = subprocess.run(argv, capture_output=True, timeout=120)
        if done.returncode != 0:
            out = (done.stderr or done.stdout).decode(errors="replace")
            raise Unavailable(f"{' '.join(argv)} failed: {out[-2000:]}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-k {self.dir} -c fsync=off -c full_page_writes=off"
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.dir / "log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self) -> None:
        self._run(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]
        )

    def create_database(self, name: str) -> str:
        """A fresh database; returns its peewee URL."""
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="gw", dbname="postgres"
        )
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return f"postgresql://gw@127.0.0.1:{self.port}/{name}"

    def destroy(self) -> None:
        try:
            self.stop()
        except Unavailable:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    """A real nginx serving deploy/nginx.conf before the given gunicorn ports
    (one upstream, round robin), on a free port, its files in `root`.

    `location_extra` adds directives to the site's `location /` (a test adds
    a header naming the upstream that answered).
    """

    def __init__(
        self, root: Path, gateway_ports: list[int], location_extra: str = ""
    ) -> None:
        if NGINX is None:
            raise Unavailable("nginx is not installed")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n    ".join(f"server 127.0.0.1:{p};" for p in gateway_ports)
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("server 127.0.0.1:8080;", servers)
        site = site.replace("listen 80;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("location / {", "location / {\n" + location_extra, 1)
        (root / "site.conf").write_text(site)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (root / d).mkdir(exist_ok=True)
        user = "user root;" if os.geteuid() == 0 else ""
        (root / "nginx.conf").write_text(f"""
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    include {root}/site.conf;
}}
""")
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "nginx.conf")],
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stderr.read().decode())
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.proc.kill()
        raise AssertionError("nginx did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
