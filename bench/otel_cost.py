"""CPU per request with OpenTelemetry off and on: `python -m bench.otel_cost`.

In one process, the Flask app with the offline `mock` provider is driven
through its WSGI test client (no network, no upstream: what is measured is
the gateway's own CPU, where tracing adds its cost). Tracing exports to a
port nothing listens on: spans are still built, batched and encoded to
protobuf by the SDK's exporter, only the send fails at once. CPU time is
process time (every thread, the batch exporter's included), after a warm-up.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from typing import Any

from crabllm_sync.app import create_app
from crabllm_sync.config import parse_config

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


def _app(endpoint: str | None, **otel: Any) -> Any:
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
    try:
        for _ in range(max(50, n // 10)):  # warm-up: imports, pools, caches
            client.post("/v1/chat/completions", json=body, headers=headers).get_data()
        gw = app.extensions["crabllm"]
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
        app.extensions["crabllm"].close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        endpoint = f"http://127.0.0.1:{receiver.stdout.readline().strip()}"
        cases: dict[str, tuple[str | None, dict[str, Any]]] = {
            "off": (None, {}),
            "traces+metrics": (endpoint, {}),
            "traces only": (endpoint, {"metrics": False}),
            "sampled 10%": (endpoint, {"sample_ratio": 0.1}),
        }
        for stream in (False, True):
            what = "chat-stream" if stream else "chat"
            cpu = {
                name: min(
                    cpu_per_request(url, args.requests, stream, **otel)
                    for _ in range(args.rounds)
                )
                for name, (url, otel) in cases.items()
            }
            off = cpu["off"]
            line = "  ".join(
                f"{name} {us:5.0f} us (+{us - off:.0f})" for name, us in cpu.items()
            )
            print(f"{what:12s} {line}")
    finally:
        receiver.terminate()
        receiver.wait(5)


if __name__ == "__main__":
    main()
