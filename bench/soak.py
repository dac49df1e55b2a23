"""Soak: a steady mixed load for a fixed time, watching for errors, RSS and fd growth.

`python -m bench.soak [--minutes 10] [--rate 100]` starts the mock upstream and
the gateway (gunicorn, 2 gevent workers, auth on, sqlite storage, usage on),
alternates chat, stream and embeddings segments at a fixed open-loop rate,
samples the gunicorn tree's RSS and open file descriptors after each segment,
then stops the gateway with SIGTERM and checks that the usage table holds one
row per answered request. Loopback only; bounded by --minutes. Writes
bench/SOAK.md. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procs, report
from bench.run import KEY, gateway_config, load

SEGMENT_SECONDS = 20.0
MIX = ("chat-minimal", "chat-stream", "embeddings")


def open_fds(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def soak(minutes: float, rate: float) -> dict[str, Any]:
    segments = max(len(MIX), int(minutes * 60 / SEGMENT_SECONDS))
    samples: list[dict[str, Any]] = []
    sent = ok = 0
    errors: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="crabllm-soak-") as tmp:
        work = Path(tmp)
        mock = procs.start_mock(work)
        gateway = None
        try:
            config, desc = gateway_config(work, mock.port, "sqlite", True)
            gateway = procs.start_gateway(work, config)
            gateway.start_sampling()
            # Warm up so the first sample is the settled baseline.
            for wl in MIX:
                load(gateway.port, wl, key=KEY, rate=rate, duration=2.0)
            base = {"rss_kb": gateway.rss_kb(), "fds": open_fds(gateway.tree())}
            started = time.monotonic()
            for i in range(segments):
                wl = MIX[i % len(MIX)]
                res = load(
                    gateway.port,
                    wl,
                    key=KEY,
                    rate=rate,
                    duration=SEGMENT_SECONDS,
                    timeout=10.0,
                )
                sent += res["sent"]
                ok += res["ok"]
                for k, v in res["errors"].items():
                    errors[k] = errors.get(k, 0) + v
                samples.append(
                    {
                        "t": round(time.monotonic() - started),
                        "workload": wl,
                        "ok": res["ok"],
                        "sent": res["sent"],
                        "p99_ms": res["latency"].get("p99", 0.0),
                        "rss_kb": gateway.rss_kb(),
                        "fds": open_fds(gateway.tree()),
                    }
                )
                print(samples[-1], flush=True)
            peak = gateway.peak_rss_kb
        finally:
            if gateway is not None:
                gateway.stop()  # SIGTERM: workers flush buffered usage on exit
            mock.stop()
        rows = (
            sqlite3.connect(work / "bench.db")
            .execute("SELECT COUNT(*) FROM usage WHERE status = 200")
            .fetchone()[0]
        )
    warmup = 3 * int(rate * 2.0)
    return {
        "desc": desc,
        "minutes": minutes,
        "rate": rate,
        "sent": sent,
        "ok": ok,
        "errors": errors,
        "base": base,
        "samples": samples,
        "peak_rss_kb": peak,
        "usage_rows": rows,
        "expected_rows": ok + warmup,
        "commit": report.commit(procs.ROOT),
        "machine": report.machine(),
        "loadavg": os.getloadavg(),
    }


def markdown(r: dict[str, Any]) -> str:
    first, last = r["samples"][0], r["samples"][-1]
    lines = [
        "# Soak result",
        "",
        f"commit `{r['commit']}`, {r['machine']}, load average after "
        f"{', '.join(f'{x:.1f}' for x in r['loadavg'])}",
        "",
        f"{r['minutes']:g} minutes at {r['rate']:g} requests/s, alternating "
        f"{', '.join(MIX)} in {SEGMENT_SECONDS:g} s segments; {r['desc']}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| requests sent / answered | {r['sent']} / {r['ok']} |",
        f"| errors | {r['errors'] or 'none'} |",
        f"| usage rows after SIGTERM (answered + warm-up) | {r['usage_rows']} "
        f"(expected {r['expected_rows']}) |",
        f"| RSS of the gunicorn tree: baseline, first, last segment, peak | "
        f"{r['base']['rss_kb'] // 1024} / {first['rss_kb'] // 1024} / "
        f"{last['rss_kb'] // 1024} / {r['peak_rss_kb'] // 1024} MB |",
        f"| open fds of the tree: baseline, first, last | {r['base']['fds']} / "
        f"{first['fds']} / {last['fds']} |",
        "",
        "| t (s) | workload | answered/sent | p99 ms | RSS MB | fds |",
        "|---|---|---|---|---|---|",
    ]
    for s in r["samples"]:
        lines.append(
            f"| {s['t']} | {s['workload']} | {s['ok']}/{s['sent']} | "
            f"{s['p99_ms']:.1f} | {s['rss_kb'] // 1024} | {s['fds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--out", default=str(procs.ROOT / "bench" / "SOAK.md"))
    args = parser.parse_args(argv)
    result = soak(args.minutes, args.rate)
    Path(args.out).write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
