"""Profile the gateway's workers under load with py-spy (a bench-only tool).

Starts the mock and the gateway as `bench.run` does, drives one workload at a
fixed rate and samples every worker with `py-spy record`; prints the functions
with the most samples (self and inclusive) and writes a flame graph per worker.

    pip install py-spy    # into the venv; not a runtime dependency
    python -m bench.profile --workload chat-minimal --rate 300 --duration 10
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import procs
from bench.run import KEY, gateway_config, load

_IDLE = ("acquire_with_timeout", "LockType.acquire")


def top(collapsed: list[Path], n: int) -> str:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    self_: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for path in collapsed:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            k = int(count)
            frames = [_short(f) for f in stack.split(";")]
            if frames[-1].startswith(_IDLE):
                continue  # gevent's resolver thread waiting for work: not CPU
            total += k
            self_[frames[-1]] += k
            for f in set(frames):
                incl[f] += k
    lines = [f"{total} samples (idle threads left out)", "", "self %  function"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in self_.most_common(n)]
    lines += ["", "incl %  function"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """'fn (/long/path/site-packages/pkg/mod.py:12)' -> 'fn (pkg/mod.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(procs.ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="chat-minimal")
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--storage", default="sqlite")
    parser.add_argument("--usage", default="on", choices=["on", "off"])
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("bench-profile"))
    parser.add_argument("--native", action="store_true", help="py-spy --native")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: pip install py-spy (bench-only)")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("worker-*.*"):  # a previous run's workers
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="crabllm-prof-") as tmp:
        work = Path(tmp)
        mock = procs.start_mock(work)
        gw = None
        try:
            config, desc = gateway_config(
                work, mock.port, args.storage, args.usage == "on"
            )
            gw = procs.start_gateway(work, config)
            load(gw.port, args.workload, key=KEY, rate=100, duration=2)  # warm-up
            workers = [p for p in gw.tree() if p != gw.proc.pid]
            spies = []
            for pid in workers:
                for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
                    cmd = [spy, "record", "--pid", str(pid), "--rate", "200"]
                    cmd += ["--duration", str(int(args.duration)), "--format", fmt]
                    cmd += ["-o", str(args.out / f"worker-{pid}.{ext}")]
                    if args.native:
                        cmd.append("--native")
                    spies.append(
                        subprocess.Popen(
                            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                        )
                    )
            result: dict = {}
            t = threading.Thread(
                target=lambda: result.update(
                    load(
                        gw.port,
                        args.workload,
                        key=KEY,
                        rate=args.rate,
                        duration=args.duration,
                    )
                )
            )
            t.start()
            for s in spies:
                s.wait(timeout=args.duration + 60)
            t.join()
        finally:
            if gw is not None:
                gw.stop()
            mock.stop()
    print(f"{args.workload} at {args.rate:g} RPS, {desc}: ok {result.get('success')}")
    print(top(sorted(args.out.glob("worker-*.txt")), args.top))


if __name__ == "__main__":
    main()
