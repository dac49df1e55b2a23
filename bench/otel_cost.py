"""CPU per request with OpenTelemetry off and on: `python -m bench.otel_cost`.

Two measurements, each in interleaved rounds (off, on, off, on, ...: the
machine's load drifts alike over both) with the median reported:

- `--served` (the figure the 10% target is about): two gunicorn gevent
  gateways, tracing off and on (full sampling, OTLP/HTTP to a receiver in its
  own process), in front of bench/mock.py, each driven in turn at a fixed
  rate by bench/load.py; CPU is user+system of the whole gunicorn tree
  (/proc) per answered request. The batch processor keeps its defaults: it
  exports every 512 spans (or 5 s), so a round's last spans go out in the
  next "on" round; round 0 only warms up, and over the rounds every span's
  export is counted once.
- in-process (default): the Flask app with the offline `mock` provider
  through its WSGI test client, no network: the gateway's own CPU without
  HTTP parsing or sockets, where tracing's share looks largest. Also
  measures the floor of the SDK's own Tracer: two spans a request
  (start_span / set_attributes / end) with the same attributes, exported by
  the SDK's OTLP exporter, nothing else.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEY = "sk-bench-otel-key-0001"

# An OTLP/HTTP receiver in its own process (its CPU is not the gateway's):
# answers 200 to every export; prints its port.
RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

# The attributes of a traced chat request and of its attempt (as otel.py sets).
ROOT_ATTRS = {
    "gen_ai.operation.name": "chat",
    "crabllm.key": "bench",
    "crabllm.request_id": "0" * 32,
    "http.response.status_code": 200,
    "gen_ai.request.model": "mock",
    "crabllm.deployment": "mock",
    "gen_ai.provider.name": "mock",
    "gen_ai.response.model": "mock",
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.usage.input_tokens": 3,
    "gen_ai.usage.output_tokens": 5,
}
ATTEMPT_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "mock",
    "gen_ai.request.model": "mock",
    "crabllm.deployment": "mock",
    "crabllm.attempt": 1,
}


def _app(endpoint: str | None, **otel: Any) -> Any:
    from crabllm_sync.app import create_app
    from crabllm_sync.config import parse_config

    data: dict[str, Any] = {
        "providers": {"mock": {"kind": "mock", "models": ["mock"]}},
        "keys": [{"name": "bench", "key": KEY}],
    }
    if endpoint:
        data["extensions"] = {"otel": {"endpoint": endpoint, **otel}}
    return create_app(parse_config(data, {}))


def cpu_per_request(endpoint: str | None, n: int, stream: bool, **otel: Any) -> float:
    """Microseconds of process CPU per request (and the export, when on)."""
    app = _app(endpoint, **otel)
    client = app.test_client()
    body = {
        "model": "mock",
        "messages": [{"role": "user", "content": "hello there"}],
        "stream": stream,
    }
    headers = {"Authorization": f"Bearer {KEY}"}
    gw = app.extensions["crabllm"]
    try:
        for _ in range(max(50, n // 10)):  # warm-up: imports, pools, caches
            client.post("/v1/chat/completions", json=body, headers=headers).get_data()
        for ext in gw.extensions:  # what the warm-up queued is not counted
            getattr(ext, "flush", lambda: None)()
        start = time.process_time()
        for _ in range(n):
            r = client.post("/v1/chat/completions", json=body, headers=headers)
            r.get_data()
            assert r.status_code == 200
        for ext in gw.extensions:  # the export of these requests is counted
            getattr(ext, "flush", lambda: None)()
        return (time.process_time() - start) / n * 1e6
    finally:
        gw.close()


def sdk_floor(endpoint: str, n: int) -> float:
    """Microseconds of CPU per request for the SDK Tracer's two spans alone."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, set_span_in_context

    provider = TracerProvider()
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"))
    )
    tracer = provider.get_tracer("bench")

    def one() -> None:
        span = tracer.start_span("chat mock", kind=SpanKind.SERVER)
        attempt = tracer.start_span(
            "chat mock",
            context=set_span_in_context(span),
            kind=SpanKind.CLIENT,
            attributes=ATTEMPT_ATTRS,
        )
        attempt.end()
        span.set_attributes(ROOT_ATTRS)
        span.end()

    try:
        for _ in range(max(50, n // 10)):
            one()
        provider.force_flush()
        start = time.process_time()
        for i in range(n):
            one()
            if i % 500 == 499:  # never past the queue's 2048: none dropped
                provider.force_flush()
        provider.force_flush()
        return (time.process_time() - start) / n * 1e6
    finally:
        provider.shutdown()


def in_process(endpoint: str, args: argparse.Namespace) -> None:
    cases: dict[str, tuple[str | None, dict[str, Any]]] = {
        "off": (None, {}),
        "traces": (endpoint, {}),
        "traces+metrics": (endpoint, {"metrics": True}),
        "sampled 10%": (endpoint, {"sample_ratio": 0.1}),
    }
    for stream in (False, True):
        what = "chat-stream" if stream else "chat"
        runs: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (url, otel) in cases.items():
                runs[name].append(cpu_per_request(url, args.requests, stream, **otel))
        off = statistics.median(runs["off"])
        med = {name: statistics.median(us) for name, us in runs.items()}
        line = "  ".join(f"{k} {us:4.0f} us (+{us - off:.0f})" for k, us in med.items())
        print(f"{what:12s} {line}", flush=True)
    floor = [sdk_floor(endpoint, args.requests) for _ in range(args.rounds)]
    print(
        "SDK Tracer floor (2 spans + OTLP export): "
        f"{statistics.median(floor):.0f} us/request"
    )


def served(endpoint: str, args: argparse.Namespace) -> None:
    from bench import procs
    from bench.run import KEY as RUN_KEY
    from bench.run import gateway_config, load

    work = Path(tempfile.mkdtemp(prefix="otel-cost-"))
    mock = procs.start_mock(work)
    gateways: dict[str, procs.Server] = {}
    try:
        for name, otel in (("off", None), ("on", endpoint)):
            d = work / name
            d.mkdir()
            config, _ = gateway_config(d, mock.port, "memory", False, otel)
            port = procs.free_port()
            argv = [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(procs.ROOT / "gunicorn.conf.py"),
            ]
            argv += ["--bind", f"127.0.0.1:{port}", "crabllm_sync.wsgi"]
            env = {"CRABLLM_CONFIG": str(config), "WEB_CONCURRENCY": str(args.workers)}
            server = procs.Server(name, argv, port, env, d / "gateway.log")
            gateways[name] = server.wait_ready(("GET", "/health", b""))
        for workload in ("chat-minimal", "chat-stream"):
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            for r in range(args.rounds + 1):
                order = ("off", "on") if r % 2 == 0 else ("on", "off")
                for name in order:
                    server = gateways[name]
                    before = server.cpu()
                    res = load(
                        server.port,
                        workload,
                        key=RUN_KEY,
                        rate=args.rate,
                        duration=args.duration,
                    )
                    time.sleep(0.3)  # the last answers' CPU
                    ms = (server.cpu() - before) / max(1, res["ok"]) * 1000
                    if r:  # round 0 warms both up
                        cpu[name].append(ms)
            ratios = [on / off for on, off in zip(cpu["on"], cpu["off"], strict=True)]
            off, on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
            print(
                f"{workload:12s} off {off:.3f} ms  on {on:.3f} ms"
                f"  (+{(on - off) * 1000:.0f} us)"
                f"  on/off median of rounds {statistics.median(ratios):.3f}"
                f"  rounds {' '.join(f'{x:.3f}' for x in ratios)}",
                flush=True,
            )
    finally:
        for server in gateways.values():
            server.stop()
        mock.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--served", action="store_true", help="through gunicorn")
    parser.add_argument("--requests", type=int, default=2000, help="in-process")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=300, help="served: RPS")
    parser.add_argument("--duration", type=float, default=3, help="served: s/step")
    parser.add_argument("--workers", type=int, default=1, help="served")
    parser.add_argument("--quick", action="store_true", help="3 rounds, shorter steps")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.requests, args.duration = 3, 1000, 2
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        (served if args.served else in_process)(endpoint, args)
    finally:
        receiver.terminate()
        receiver.wait(5)


if __name__ == "__main__":
    main()
