"""A/B micro-benchmark of the stream read: two code trees, interleaved runs.

    python -m bench.streams_ab --before /tmp/before --streams 200 --rounds 3

Starts the mock upstream once, then for each round starts one gunicorn gevent
worker of each tree in turn (the order alternates every round) and sends it
`--streams` concurrent slow streams (the mock's 20 chunks 50 ms apart). For
each run: gateway CPU per stream (the whole gunicorn tree, /proc), TTFB and
inter-chunk gap percentiles as the load generator saw them. Bounded: each
burst has a 30 s timeout, each server is stopped after its run. Prints one
JSON object (and each run on stderr as it ends); `--after` defaults to this
checkout. Compare snapshots (`git archive REV | tar -x -C DIR`), not a tree
being edited while it runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import procs
from bench.run import KEY, gateway_config, load


def one_run(tree: Path, work: Path, mock_port: int, streams: int) -> dict[str, Any]:
    config, _ = gateway_config(work, mock_port, "memory", False)
    port = procs.free_port()
    argv = [
        procs.sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(tree / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "crabllm_sync.wsgi",
    ]
    env = {"CRABLLM_CONFIG": str(config), "WEB_CONCURRENCY": "1"}
    env["PYTHONPATH"] = str(tree)
    server = procs.Server("gateway", argv, port, env, work / "gateway.log")
    try:
        server.wait_ready(("GET", "/health", b""))
        load(port, "slow-stream", key=KEY, burst=10, timeout=30.0)  # warm up
        cpu = server.cpu()
        res = load(port, "slow-stream", key=KEY, burst=streams, timeout=30.0)
        cpu = server.cpu() - cpu
    finally:
        server.stop()
    return {
        "ok": res["ok"],
        "cpu_ms_per_stream": cpu / max(1, res["ok"]) * 1000,
        "ttfb_p50": res["ttfb"].get("p50"),
        "ttfb_p99": res["ttfb"].get("p99"),
        "gap_p50": res["gap"].get("p50"),
        "gap_p99": res["gap"].get("p99"),
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=procs.ROOT)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="streams-ab-") as tmp:
        work = Path(tmp)
        mock = procs.start_mock(work)
        try:
            for i in range(args.rounds):
                order = list(trees) if i % 2 == 0 else list(trees)[::-1]
                for name in order:
                    run = one_run(trees[name], work, mock.port, args.streams)
                    print(name, json.dumps(run), file=sys.stderr, flush=True)
                    runs[name].append(run)
        finally:
            mock.stop()
    median = {
        name: {key: _median([r[key] for r in rs]) for key in rs[0]}
        for name, rs in runs.items()
    }
    print(json.dumps({"streams": args.streams, "median": median, "runs": runs}))


if __name__ == "__main__":
    main()
