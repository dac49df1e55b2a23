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


def shares(
    collapsed: list[Path],
) -> tuple[int, collections.Counter, collections.Counter]:
    """(samples, self counts, inclusive counts) per function from py-spy's raw
    output."""
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
    return total, self_, incl


def top(collapsed: list[Path], n: int) -> str:
    """Self and inclusive sample shares per function, as text."""
    total, self_, incl = shares(collapsed)
    if not total:
        return "no samples"
    lines = [f"{total} samples (idle threads left out)", "", "self %  function"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in self_.most_common(n)]
    lines += ["", "incl %  function"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def summary(collapsed: list[Path], n: int = 15) -> dict:
    """What RESULTS.md shows: the top functions by own samples, and the
    gateway's own functions (crabllm_sync) by inclusive samples."""
    total, self_, incl = shares(collapsed)
    if not total:
        return {"samples": 0, "self": [], "own": []}
    ours = [(f, c) for f, c in incl.most_common() if "(crabllm_sync/" in f]
    return {
        "samples": total,
        "self": [[f, c / total] for f, c in self_.most_common(n)],
        "own": [[f, c / total] for f, c in ours[:n]],
    }


def _short(frame: str) -> str:
    """'fn (/long/path/site-packages/pkg/mod.py:12)' -> 'fn (pkg/mod.py)'."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3.11/", str(procs.ROOT) + "/"):
        if marker in where:
            where = where.split(marker, 1)[1]
            break
    return f"{name} ({where})"


def spy_path() -> str | None:
    """py-spy beside this interpreter or on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    return shutil.which("py-spy")


def profile(
    workload: str,
    rate: float,
    duration: float,
    out: Path,
    *,
    storage: str = "sqlite",
    usage: bool = True,
    native: bool = False,
) -> dict:
    """Sample every gateway worker with py-spy while `workload` runs at `rate`;
    raw stacks and a flame graph per worker land in `out`. Returns the load
    result and the profile's summary(); raises RuntimeError without py-spy."""
    spy = spy_path()
    if spy is None:
        raise RuntimeError("py-spy not found: pip install py-spy (bench-only)")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("worker-*.*"):  # a previous run's workers
        old.unlink()
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="crabllm-prof-") as tmp:
        work = Path(tmp)
        mock = procs.start_mock(work)
        gw = None
        try:
            config, desc = gateway_config(work, mock.port, storage, usage)
            gw = procs.start_gateway(work, config)
            load(gw.port, workload, key=KEY, rate=100, duration=2)  # warm-up
            workers = [p for p in gw.tree() if p != gw.proc.pid]
            spies = []
            for pid in workers:
                for fmt, ext in (("raw", "txt"), ("flamegraph", "svg")):
                    cmd = [spy, "record", "--pid", str(pid), "--rate", "200"]
                    cmd += ["--duration", str(int(duration)), "--format", fmt]
                    cmd += ["-o", str(out / f"worker-{pid}.{ext}")]
                    if native:
                        cmd.append("--native")
                    spies.append(
                        subprocess.Popen(
                            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                        )
                    )
            t = threading.Thread(
                target=lambda: result.update(
                    load(gw.port, workload, key=KEY, rate=rate, duration=duration)
                )
            )
            t.start()
            errors = []
            for s in spies:
                _, err = s.communicate(timeout=duration + 60)
                if s.returncode != 0:
                    errors.append(err.decode(errors="replace").strip()[-300:])
            t.join()
        finally:
            if gw is not None:
                gw.stop()
            mock.stop()
    if errors:
        raise RuntimeError(f"py-spy failed: {errors[0]}")
    return {
        "workload": workload,
        "rate": rate,
        "duration": duration,
        "config": desc,
        "ok": result.get("success"),
        "cpu_note": "py-spy samples 200/s; shares of the workers' busy samples",
        **summary(sorted(out.glob("worker-*.txt"))),
    }


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
    try:
        res = profile(
            args.workload,
            args.rate,
            args.duration,
            args.out,
            storage=args.storage,
            usage=args.usage == "on",
            native=args.native,
        )
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    print(f"{args.workload} at {args.rate:g} RPS, {res['config']}: ok {res['ok']}")
    print(top(sorted(args.out.glob("worker-*.txt")), args.top))


if __name__ == "__main__":
    main()
