"""The benchmark runner: `python -m bench.run [--quick]` (what `make bench` runs).

Starts the mock upstream, the gateway (gunicorn, 2 gevent workers, auth on) and
the bare pass-through floor, drives each with the open-loop load generator at
fixed rates and with bursts of concurrent slow streams, reads CPU and RSS of each
gunicorn tree from /proc, and writes bench/RESULTS.md (and results.json).
Everything listens on 127.0.0.1; every load is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.workloads import (
    CHAT_MODEL,
    EMBED_MODEL,
    RESPONSES_MODEL,
    SLOW_MODEL,
    WORKLOADS,
)

KEY = "sk-bench-0123456789abcdef"
TARGETS = ("direct", "gateway", "bare")

QUICK = {
    "duration": 2.0,
    "rates": {
        "chat-minimal": [100, 250, 500, 800, 1000],
        "chat-stream": [100, 500, 1000],
        "embeddings": [100, 500, 1000],
        "large-context": [250],
        "tools": [250],
        "responses-stream": [100, 500],
        "responses-stream-nostore": [100, 500],
    },
    "ladder": [],
    "bursts": [100, 500],
    "timeout": 5.0,
}
FULL = {
    "duration": 6.0,
    "rates": {
        "chat-minimal": [100, 250, 500, 800, 1000],
        "chat-stream": [100, 250, 500, 1000],
        "embeddings": [100, 250, 500, 1000],
        "large-context": [100, 250, 500, 1000],
        "tools": [100, 250, 500, 1000],
        "responses-stream": [100, 250, 500, 1000],
        "responses-stream-nostore": [100, 250, 500, 1000],
    },
    # chat-minimal above the table's rates, to find the frontier; stops when saturated
    "ladder": [1250, 1500, 2000],
    "bursts": [100, 500, 1000],
    "timeout": 10.0,
}


def gateway_config(
    workdir: Path,
    mock_port: int,
    storage: str,
    usage: bool,
    otel: str | None = None,
) -> tuple[Path, str]:
    """The gateway's crabllm.toml for the run, and a one-line description of it."""
    lines = [
        'listen = "127.0.0.1:0"',
        "",
        "[providers.mock]",
        'kind = "openai"',
        f'base_url = "http://127.0.0.1:{mock_port}/v1"',
        'api_key = "sk-upstream"',
        f'models = ["{CHAT_MODEL}", "{SLOW_MODEL}", "{EMBED_MODEL}"]',
        "max_retries = 0",
        "timeout = 30",
        "",
        "[providers.bridged]",
        'kind = "chat-only"',  # no adapter of its own: /v1/responses is bridged
        f'base_url = "http://127.0.0.1:{mock_port}/v1"',
        'api_key = "sk-upstream"',
        f'models = ["{RESPONSES_MODEL}"]',
        "max_retries = 0",
        "timeout = 30",
        "",
        "[[keys]]",
        'name = "bench"',
        f'key = "{KEY}"',
        "",
        "[storage]",
        f'kind = "{storage}"',
    ]
    if storage == "sqlite":
        lines.append(f'path = "{workdir / "bench.db"}"')
    if usage:
        lines += ["", "[extensions.usage]"]
    if otel:
        lines += ["", "[extensions.otel]", f'endpoint = "{otel}"']
    path = workdir / "crabllm.toml"
    path.write_text("\n".join(lines) + "\n")
    state = "on" if usage else "off"
    desc = f"auth on (1 key), storage {storage}, usage extension {state}"
    if otel:
        desc += ", OpenTelemetry on (OTLP/HTTP to a local receiver)"
    return path, desc


def _start_receiver(work: Path) -> str:
    """An OTLP/HTTP receiver process (bench/otel_cost.py's) for --otel; its URL."""
    import subprocess
    import sys

    from bench.otel_cost import RECEIVER

    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True, cwd=work
    )
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    _RECEIVERS.append(proc)
    return f"http://127.0.0.1:{port}"


_RECEIVERS: list[Any] = []


def has_module(relpath: str) -> bool:
    return (procs.ROOT / "crabllm_sync" / relpath).exists()


def load(
    port: int,
    workload: str,
    *,
    key: str = "",
    rate: float | None = None,
    duration: float = 0.0,
    burst: int | None = None,
    timeout: float = 10.0,
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(port)]
    argv += ["--workload", workload, "--timeout", str(timeout)]
    if key:
        argv += ["--key", key]
    if burst is not None:
        argv += ["--burst", str(burst)]
        limit = timeout + 60
    else:
        argv += ["--rate", str(rate), "--duration", str(duration)]
        limit = duration + timeout + 60
    env = {**os.environ, "PYTHONPATH": str(procs.ROOT)}
    out = subprocess.run(
        argv, capture_output=True, env=env, timeout=limit, check=True
    ).stdout
    return json.loads(out)


def check_nodelay(work: Path, mock_port: int) -> dict[str, Any]:
    """TCP_NODELAY on the client and upstream sockets under a gevent worker."""
    import http.client

    server = procs.start_bare(
        work,
        f"http://127.0.0.1:{mock_port}",
        workers=1,
        app="bench.nodelay:application",
    )
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        return json.loads(conn.getresponse().read())
    finally:
        server.stop()


class Bench:
    def __init__(self, servers: dict[str, procs.Server], mock: procs.Server) -> None:
        self.servers = servers
        self.mock = mock
        self.steps: list[dict[str, Any]] = []

    def step(self, target: str, workload: str, **kw: Any) -> dict[str, Any]:
        """One load against one target, with the CPU its tree and the mock spent."""
        server = self.servers.get(target)
        port = self.mock.port if target == "direct" else server.port
        key = KEY if target == "gateway" else ""
        pids = server.tree() if server else []
        cpu0 = procs.cpu_seconds(pids) if server else 0.0
        mock0 = self.mock.cpu()
        res = load(port, workload, key=key, **kw)
        res["target"] = target
        res["cpu_s"] = procs.cpu_seconds(pids) - cpu0 if server else 0.0
        res["mock_cpu_s"] = self.mock.cpu() - mock0
        ok = max(1, res["ok"])
        res["cpu_ms_per_req"] = res["cpu_s"] / ok * 1000
        res["mock_cpu_ms_per_req"] = res["mock_cpu_s"] / ok * 1000
        res["loadgen_cpu_ms_per_req"] = res["loadgen_cpu_s"] / ok * 1000
        self.steps.append(res)
        lat = res["latency"]
        print(
            f"  {target:8} {workload:14} "
            + (f"burst {res['burst']:5}" if res["burst"] else f"{res['rate']:6.0f} rps")
            + f"  ok {res['success']:.2%}  p50 {lat.get('p50', 0):7.2f}"
            f"  p99 {lat.get('p99', 0):8.2f} ms"
            f"  cpu {res['cpu_ms_per_req']:.2f} ms/req",
            flush=True,
        )
        self.settle(server or self.mock)
        return res

    def settle(self, server: procs.Server, limit: float = 20.0) -> None:
        """Wait until `server` stops burning CPU (an overrun step's backlog)."""
        deadline = time.monotonic() + limit
        before = server.cpu()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            now = server.cpu()
            if now - before < 0.02:
                return
            before = now


def fell_behind(res: dict[str, Any]) -> bool:
    """Clearly past saturation (failures, or well short of the offered rate):
    higher rates would only pile up a backlog. A P99 spike alone is not enough
    on a shared machine."""
    if res["success"] < 1.0:
        return True
    return bool(res["rate"]) and res["achieved_rps"] < 0.9 * res["rate"]


def saturated(res: dict[str, Any]) -> bool:
    """Falling behind: failures, throughput short of the offered rate, or queueing."""
    if res["success"] < 1.0:
        return True
    if res["rate"] and res["achieved_rps"] < 0.97 * res["rate"]:
        return True
    return res["latency"].get("p99", 0.0) > 100.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    plan = QUICK if args.quick else FULL
    duration = args.duration or plan["duration"]
    storage = args.storage
    if storage == "auto":
        storage = "sqlite" if has_module("storage/sqlite.py") else "memory"
    usage = args.usage == "on" or (
        args.usage == "auto" and has_module("extensions/usage.py")
    )
    meta: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "duration": duration,
        "commit": report.commit(procs.ROOT),
        "machine": report.machine(),
        "loadavg_before": os.getloadavg(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory(prefix="crabllm-bench-") as tmp:
        work = Path(tmp)
        mock = procs.start_mock(work)
        servers: dict[str, procs.Server] = {}
        try:
            otel = _start_receiver(work) if args.otel else None
            config, meta["config"] = gateway_config(
                work, mock.port, storage, usage, otel
            )
            servers["gateway"] = procs.start_gateway(work, config)
            servers["bare"] = procs.start_bare(work, f"http://127.0.0.1:{mock.port}")
            for s in servers.values():
                s.start_sampling()
            meta["idle_rss_kb"] = {n: s.rss_kb() for n, s in servers.items()}
            meta["nodelay"] = check_nodelay(work, mock.port)
            bench = Bench(servers, mock)
            print(f"crabllm-sync bench ({meta['mode']}): {meta['config']}", flush=True)
            print("warm-up", flush=True)
            for target in TARGETS:
                for wl in ("chat-minimal", "chat-stream", "embeddings"):
                    load_port = (
                        mock.port if target == "direct" else servers[target].port
                    )
                    load(
                        load_port,
                        wl,
                        key=KEY if target == "gateway" else "",
                        rate=200,
                        duration=1.0,
                    )
            bench.steps.clear()
            wanted = [w for w in args.workload or plan["rates"] if w in plan["rates"]]
            for wl in wanted:
                print(wl, flush=True)
                rates = list(plan["rates"][wl])
                if wl == "chat-minimal":
                    rates += plan["ladder"]
                # Once a target falls behind, higher rates only pile up a backlog.
                behind: set[str] = set()
                targets = ("gateway",) if WORKLOADS[wl].gateway_only else TARGETS
                for rate in rates:
                    for target in targets:
                        if target in behind:
                            continue
                        res = bench.step(
                            target,
                            wl,
                            rate=rate,
                            duration=duration,
                            timeout=plan["timeout"],
                        )
                        if fell_behind(res):
                            behind.add(target)
                    if len(behind) == len(targets):
                        break
            if not args.workload or "slow-stream" in args.workload:
                print("concurrent slow streams (50 ms per chunk)", flush=True)
                for n in plan["bursts"]:
                    for target in TARGETS:
                        bench.step(target, "slow-stream", burst=n, timeout=60.0)
            meta["peak_rss_kb"] = {n: s.peak_rss_kb for n, s in servers.items()}
            meta["hwm_kb"] = {n: s.hwm_kb() for n, s in servers.items()}
            meta["workers"] = {n: len(s.tree()) - 1 for n, s in servers.items()}
        finally:
            for s in servers.values():
                s.stop()
            mock.stop()
            while _RECEIVERS:
                receiver = _RECEIVERS.pop()
                receiver.terminate()
                receiver.wait(5)
            meta["gateway_log_tail"] = report.tail(work / "gateway.log")
    meta["loadavg_after"] = os.getloadavg()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return {"meta": meta, "steps": bench.steps}


PROFILED = (("chat-minimal", 400.0), ("chat-stream", 400.0))
PROFILE_SECONDS = 10.0


def profiles(out: Path) -> list[dict[str, Any]]:
    """py-spy profiles of the gateway for RESULTS.md (one fresh gateway per
    workload, after the measured run); an entry says why one could not be made
    (py-spy missing, or ptrace not permitted in this container)."""
    from bench import profile

    made: list[dict[str, Any]] = []
    for workload, rate in PROFILED:
        print(f"profile {workload} at {rate:g} RPS", flush=True)
        try:
            made.append(
                profile.profile(workload, rate, PROFILE_SECONDS, out / workload)
            )
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            made.append({"workload": workload, "rate": rate, "error": str(exc)})
    return made


def _interrupted(signum: int, _frame: object) -> None:
    raise SystemExit(f"interrupted by signal {signum}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="about 2 minutes")
    parser.add_argument("--duration", type=float, help="seconds per fixed-rate step")
    parser.add_argument(
        "--storage",
        choices=("auto", "memory", "sqlite"),
        default="auto",
        help="gateway [storage] kind (auto: sqlite once storage/sqlite.py exists)",
    )
    parser.add_argument(
        "--usage",
        choices=("auto", "on", "off"),
        default="auto",
        help="[extensions.usage] (auto: on once extensions/usage.py exists)",
    )
    parser.add_argument(
        "--otel",
        action="store_true",
        help="turn OpenTelemetry on, exporting to a local OTLP/HTTP receiver",
    )
    parser.add_argument(
        "--workload",
        action="append",
        help="only these workloads (repeatable; slow-stream for the bursts)",
    )
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy profiles of chat-minimal and chat-stream at the end",
    )
    args = parser.parse_args(argv)
    # Stop cleanly (servers included) on SIGTERM, and on SIGINT even when started
    # in the background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    data = run(args)
    if not args.no_profile and not args.workload:
        data["profiles"] = profiles(args.out.parent.parent / "bench-profile")
    args.out.write_text(report.markdown(data))
    args.out.with_name("results.json").write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
