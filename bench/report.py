"""Turn a benchmark run's numbers into bench/RESULTS.md; machine and commit facts.

Pure formatting apart from commit() / machine() / tail(), which read git and /proc.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

TARGETS = {
    "cpu_chat": 2.5,
    "cpu_embed": 2.5,
    "cpu_stream": 3.0,
    "p50_added": 2.5,
    "p99_added": 25.0,
    "no_saturation_below": 800,
    "ttfb_500": 50.0,
    "rss_mb": 160.0,
}


def commit(root: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "crabllm_sync", "gunicorn.conf.py")
    return head + (" (with uncommitted changes in crabllm_sync)" if dirty else "")


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} x {model}, {mem_gb:.0f} GiB RAM, Linux "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _f(x: float | None, nd: int = 2) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _index(steps: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    return {
        (s["target"], s["workload"], s["rate"] or None, s["burst"] or None): s
        for s in steps
    }


def _added(gw: dict | None, direct: dict | None, part: str, p: str) -> float | None:
    if not gw or not direct or not gw[part] or not direct[part]:
        return None
    return gw[part][p] - direct[part][p]


def _get(s: dict | None, part: str, p: str) -> float | None:
    if not s or not s[part]:
        return None
    return s[part].get(p)


def saturation_rate(steps: list[dict[str, Any]], target: str) -> float | None:
    """The lowest chat-minimal rate at which `target` fell behind (None: never)."""
    from bench.run import saturated

    rates = sorted(
        s["rate"]
        for s in steps
        if s["target"] == target and s["workload"] == "chat-minimal" and s["rate"]
        if saturated(s)
    )
    return rates[0] if rates else None


def frontier(steps: list[dict[str, Any]], target: str, limit_ms: float) -> float | None:
    """Highest chat-minimal rate, with every lower one, at 100% and P99 < limit."""
    best = None
    rows = sorted(
        (s for s in steps if s["target"] == target and s["workload"] == "chat-minimal"),
        key=lambda s: s["rate"] or 0,
    )
    for s in rows:
        if not s["rate"]:
            continue
        ok = (
            s["success"] >= 1.0
            and s["achieved_rps"] >= 0.97 * s["rate"]
            and s["latency"].get("p99", 1e9) < limit_ms
        )
        if not ok:
            break
        best = s["rate"]
    return best


def markdown(data: dict[str, Any]) -> str:
    meta, steps = data["meta"], data["steps"]
    ix = _index(steps)
    out: list[str] = []
    w = out.append
    w("# crabllm-sync benchmark results\n")
    w(f"- Commit measured: `{meta['commit']}`")
    w(f"- Machine: {meta['machine']}")
    la0, la1 = meta["loadavg_before"], meta["loadavg_after"]
    w(
        f"- Load average (1/5/15 min) before: {la0[0]:.2f} / {la0[1]:.2f} / "
        f"{la0[2]:.2f}; after: {la1[0]:.2f} / {la1[1]:.2f} / {la1[2]:.2f} "
        "(the mock, the load generator and both servers share these cores)"
    )
    w(
        f"- Run: {meta['mode']} mode, {meta['duration']:g} s per fixed-rate step, "
        f"{meta['started']} to {meta['finished']}"
    )
    w(
        f"- Gateway: `gunicorn -c gunicorn.conf.py crabllm_sync.wsgi`, 2 gevent "
        f"workers, {meta['config']}"
    )
    w(
        "- Floor: `bench/bare.py` (Flask + gevent + requests pass-through, no "
        "features), same gunicorn settings, measured in the same run"
    )
    w(
        "- Latency is from the *scheduled* send time to the last byte of the answer "
        "(open loop); *added* = through the server minus direct to the mock, at the "
        "same rate in the same run. CPU is user+system seconds of the whole gunicorn "
        "tree (/proc) divided by answered requests."
    )
    w(
        "- What the profile shows and what bounds the gateway where a target is "
        "missed: the last two sections."
    )
    w("")

    # -- targets -------------------------------------------------------------
    w("## Against the issue's targets\n")
    w("| target | goal | gateway | bare floor | met |")
    w("|---|---|---|---|---|")

    def cpu_at(target: str, wl: str) -> tuple[float | None, str]:
        """CPU per request at 500 RPS, else the highest lower rate measured."""
        for r in (500, 250, 100):
            s = ix.get((target, wl, r, None))
            if s:
                return s["cpu_ms_per_req"], f"{s['cpu_ms_per_req']:.2f} ({r} RPS)"
        return None, "-"

    def row(name: str, goal: str, gw: Any, bare: Any, met: bool | None) -> None:
        mark = "-" if met is None else ("yes" if met else "**no**")
        w(f"| {name} | {goal} | {gw} | {bare} | {mark} |")

    for wl, key in (
        ("chat-minimal", "cpu_chat"),
        ("embeddings", "cpu_embed"),
        ("chat-stream", "cpu_stream"),
    ):
        (g, g_cell), (_, b_cell) = cpu_at("gateway", wl), cpu_at("bare", wl)
        row(
            f"CPU per request, {wl}",
            f"<= {TARGETS[key]} ms",
            g_cell,
            b_cell,
            None if g is None else g <= TARGETS[key],
        )
    worst = {"gateway": [None, None, 1.0], "bare": [None, None, 1.0]}
    for (target, wl, rate, burst), s in ix.items():
        if target not in worst or burst or rate not in (100, 250, 500):
            continue
        d = ix.get(("direct", wl, rate, None))
        a50, a99 = _added(s, d, "latency", "p50"), _added(s, d, "latency", "p99")
        cur = worst[target]
        if a50 is not None and (cur[0] is None or a50 > cur[0]):
            cur[0] = a50
        if a99 is not None and (cur[1] is None or a99 > cur[1]):
            cur[1] = a99
        cur[2] = min(cur[2], s["success"])
    g, b = worst["gateway"], worst["bare"]
    row(
        "added P50, worst workload at 100/250/500 RPS",
        f"<= {TARGETS['p50_added']} ms",
        _f(g[0]),
        _f(b[0]),
        None if g[0] is None else g[0] <= TARGETS["p50_added"],
    )
    row(
        "added P99, worst workload at 100/250/500 RPS",
        f"<= {TARGETS['p99_added']} ms",
        _f(g[1]),
        _f(b[1]),
        None if g[1] is None else g[1] <= TARGETS["p99_added"],
    )
    row("success at 100/250/500 RPS", "100%", f"{g[2]:.2%}", f"{b[2]:.2%}", g[2] >= 1)
    gs, bs = saturation_rate(steps, "gateway"), saturation_rate(steps, "bare")
    top = max(
        (s["rate"] or 0 for s in steps if s["workload"] == "chat-minimal"), default=0
    )
    row(
        "chat-minimal saturates at",
        f"not below {TARGETS['no_saturation_below']} RPS",
        f"{gs:g} RPS" if gs else f"not up to {top:g} RPS",
        f"{bs:g} RPS" if bs else f"not up to {top:g} RPS",
        gs is None or gs > TARGETS["no_saturation_below"],
    )
    for n in (500, 1000):
        gw_b = ix.get(("gateway", "slow-stream", None, n))
        if not gw_b:
            continue
        d_b = ix.get(("direct", "slow-stream", None, n))
        bare_b = ix.get(("bare", "slow-stream", None, n))
        row(
            f"{n} concurrent slow streams complete",
            "100%",
            f"{gw_b['success']:.2%}",
            f"{bare_b['success']:.2%}" if bare_b else "-",
            gw_b["success"] >= 1.0,
        )
        if n == 500:
            t, tb = _added(gw_b, d_b, "ttfb", "p50"), _added(bare_b, d_b, "ttfb", "p50")
            row(
                "500 streams: added time to first byte, P50",
                f"<= {TARGETS['ttfb_500']:g} ms",
                _f(t, 1),
                _f(tb, 1),
                None if t is None else t <= TARGETS["ttfb_500"],
            )
    rss = meta.get("peak_rss_kb", {})
    if rss:
        g_mb, b_mb = rss["gateway"] / 1024, rss["bare"] / 1024
        row(
            "peak RSS of the gunicorn tree",
            f"<= {TARGETS['rss_mb']:g} MB",
            f"{g_mb:.0f} MB",
            f"{b_mb:.0f} MB",
            g_mb <= TARGETS["rss_mb"],
        )
    w("")

    # -- fixed rates -----------------------------------------------------------
    w("## Fixed-rate latency (ms) and CPU per request\n")
    w(
        "| workload | RPS | direct P50 / P99 | gateway P50 / P99 | gateway added "
        "P50 / P99 | gateway ok | gateway CPU ms/req | bare P50 / P99 | bare added "
        "P50 / P99 | bare ok | bare CPU ms/req |"
    )
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    workloads = list(dict.fromkeys(s["workload"] for s in steps if s["rate"]))
    for wl in workloads:
        rates = sorted({s["rate"] for s in steps if s["workload"] == wl and s["rate"]})
        for rate in rates:
            d = ix.get(("direct", wl, rate, None))
            cells = [wl, f"{rate:g}", _pair(d, "latency")]
            for t in ("gateway", "bare"):
                s = ix.get((t, wl, rate, None))
                cells += [
                    _pair(s, "latency"),
                    f"{_f(_added(s, d, 'latency', 'p50'))} / "
                    f"{_f(_added(s, d, 'latency', 'p99'))}",
                    f"{s['success']:.2%}" if s else "-",
                    _f(s["cpu_ms_per_req"]) if s else "-",
                ]
            w("| " + " | ".join(cells) + " |")
    w("")
    w(
        "A row's `-` for a server: not run, it already fell behind at a lower rate "
        "of that workload (see the frontier table).\n"
    )

    # -- streams at rate -------------------------------------------------------
    stream_rows = [s for s in steps if s["workload"] == "chat-stream" and s["rate"]]
    if stream_rows:
        w("## 20-chunk streams at fixed rates: first byte and inter-chunk gaps (ms)\n")
        w("| RPS | target | TTFB P50 / P99 | added TTFB P50 | gap P50 / P99 / max |")
        w("|---|---|---|---|---|")
        for s in sorted(stream_rows, key=lambda s: (s["rate"], s["target"])):
            d = ix.get(("direct", "chat-stream", s["rate"], None))
            w(
                f"| {s['rate']:g} | {s['target']} | {_pair(s, 'ttfb')} | "
                f"{_f(_added(s, d, 'ttfb', 'p50'))} | {_gaps(s)} |"
            )
        w("")

    # -- bursts ----------------------------------------------------------------
    bursts = [s for s in steps if s["burst"]]
    if bursts:
        w("## Concurrent slow streams (20 chunks, 50 ms apart, all started at once)\n")
        w(
            "Sockets are connected before the start so the burst measures the server, "
            "not the kernel's accept queue. TTFB runs from the common start.\n"
        )
        w(
            "| streams | target | complete | TTFB P50 / P99 (ms) | added TTFB P50 | "
            "gap P50 / P99 / max (ms) | CPU ms/stream |"
        )
        w("|---|---|---|---|---|---|---|")
        for s in sorted(bursts, key=lambda s: (s["burst"], s["target"])):
            d = ix.get(("direct", "slow-stream", None, s["burst"]))
            cpu = _f(s["cpu_ms_per_req"]) if s["target"] != "direct" else "-"
            w(
                f"| {s['burst']} | {s['target']} | {s['ok']}/{s['sent']} | "
                f"{_pair(s, 'ttfb', 1)} | {_f(_added(s, d, 'ttfb', 'p50'), 1)} | "
                f"{_gaps(s)} | {cpu} |"
            )
        w("")

    # -- frontier --------------------------------------------------------------
    w("## Throughput frontier (chat-minimal)\n")
    w(
        "The highest measured rate at which every lower rate too was answered 100% "
        "at the offered rate with P99 under the limit.\n"
    )
    w("| target | P99 < 5 ms | P99 < 10 ms | P99 < 50 ms | falls behind at |")
    w("|---|---|---|---|---|")
    for t in ("direct", "gateway", "bare"):
        cells = [frontier(steps, t, lim) for lim in (5, 10, 50)]
        sat = saturation_rate(steps, t)
        w(
            f"| {t} | "
            + " | ".join(f"{c:g}" if c else "none" for c in cells)
            + f" | {f'{sat:g} RPS' if sat else 'not reached'} |"
        )
    w("")

    # -- memory ----------------------------------------------------------------
    if rss:
        w("## Memory of the gunicorn tree (master + 2 workers)\n")
        w(
            "| server | idle RSS | peak RSS (sum, sampled every 0.1 s) | "
            "sum of per-process VmHWM |"
        )
        w("|---|---|---|---|")
        for t in ("gateway", "bare"):
            w(
                f"| {t} | {meta['idle_rss_kb'][t] / 1024:.0f} MB | "
                f"{rss[t] / 1024:.0f} MB | {meta['hwm_kb'][t] / 1024:.0f} MB |"
            )
        w("")

    nd = meta.get("nodelay")
    if nd:
        w("## TCP_NODELAY\n")
        w(
            "Read under a gunicorn gevent worker with the gateway's settings "
            "(`bench/nodelay.py`): the accepted client socket inherits it from "
            "gunicorn's listener, urllib3 sets it on upstream connections.\n"
        )
        w(
            f"- client socket: {nd.get('client')}; upstream socket: "
            f"{nd.get('upstream')} (1 = Nagle off)"
        )
        w("")

    # -- tooling ---------------------------------------------------------------
    w("## Is the tooling the bottleneck?\n")
    w(
        "Direct to the mock, the whole path is load generator + mock. Schedule lag is "
        "how late the generator wrote a request after its scheduled time.\n"
    )
    w(
        "| workload | RPS | direct P50 / P99 (ms) | mock CPU ms/req | "
        "load generator CPU ms/req | schedule lag P99 (ms) |"
    )
    w("|---|---|---|---|---|---|")
    for s in steps:
        if s["target"] != "direct" or not s["rate"]:
            continue
        w(
            f"| {s['workload']} | {s['rate']:g} | {_pair(s, 'latency')} | "
            f"{_f(s['mock_cpu_ms_per_req'], 3)} | {_f(s['loadgen_cpu_ms_per_req'], 3)} "
            f"| {_f(_get(s, 'lag', 'p99'))} |"
        )
    w("")

    # -- profile and bounds ------------------------------------------------------
    _profiles(w, data.get("profiles") or [])
    if BOUNDS.exists():
        w(BOUNDS.read_text().rstrip())
        w("")
    return "\n".join(out) + "\n"


# Hand-written: what bounds each missed target (kept beside the code it explains).
BOUNDS = Path(__file__).with_name("BOUNDS.md")


def _profiles(w: Any, profiles: list[dict[str, Any]]) -> None:
    w("## Profile of the gateway (py-spy)\n")
    if not profiles:
        w("Not run (`python -m bench.run` makes it unless `--no-profile`).\n")
        return
    w(
        "A fresh gateway (same settings) per workload after the measured run, every "
        "worker sampled by `py-spy record` at 200 Hz; shares are of the workers' "
        "busy samples. Flame graphs: `bench-profile/<workload>/worker-*.svg`. "
        "`python -m bench.profile` makes one by hand.\n"
    )
    for p in profiles:
        title = f"### {p['workload']} at {p['rate']:g} RPS"
        if "error" in p:
            w(f"{title}\n\nNot made: {p['error']}\n")
            continue
        ok = p.get("ok")
        ok_text = f"{ok:.2%}" if isinstance(ok, float) else "-"
        w(f"{title} ({p['duration']:g} s, {p['samples']} samples, ok {ok_text})\n")
        w(
            "| functions with the most own samples | share | | the gateway's own code, "
            "inclusive | share |"
        )
        w("|---|---|---|---|---|")
        rows = max(len(p["self"]), len(p["own"]))
        for i in range(rows):
            a = p["self"][i] if i < len(p["self"]) else ["", None]
            b = p["own"][i] if i < len(p["own"]) else ["", None]
            w(f"| {_code(a[0])} | {_pct(a[1])} | | {_code(b[0])} | {_pct(b[1])} |")
        w("")


def _code(frame: str) -> str:
    return f"`{frame}`" if frame else ""


def _pct(share: float | None) -> str:
    return f"{share:.1%}" if share is not None else ""


def _pair(s: dict | None, part: str, nd: int = 2) -> str:
    if not s or not s[part]:
        return "-"
    return f"{s[part]['p50']:.{nd}f} / {s[part]['p99']:.{nd}f}"


def _gaps(s: dict) -> str:
    g = s["gap"]
    if not g:
        # Every answer arrived as one chunked-encoding frame: nothing between.
        return "none (one write)" if s.get("ok") else "-"
    return f"{g['p50']:.1f} / {g['p99']:.1f} / {g['max']:.1f}"


def main() -> None:
    """`python -m bench.report [results.json]`: re-render RESULTS.md beside it."""
    import json
    import sys

    src = Path(
        sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json"
    )
    src.with_name("RESULTS.md").write_text(markdown(json.loads(src.read_text())))


if __name__ == "__main__":
    main()
