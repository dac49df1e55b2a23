"""An open-loop, fixed-rate HTTP/1.1 load generator with latency percentiles.

Requests are sent at scheduled times whatever the server does (open loop), over
a pool of keep-alive sockets; latency runs from the *scheduled* send time to the
last byte of the answer, so a stalled server cannot hide its queue (no
coordinated omission). Streams are read to their last chunk; time to first
body byte and the gaps between chunks are recorded too. One gevent process.

    python -m bench.load --port 8080 --workload chat-minimal --rate 500 --duration 5
    python -m bench.load --port 8080 --workload slow-stream --burst 500

Prints one JSON object (see `summarise`) on stdout.
"""

from __future__ import annotations

import argparse
import resource
import socket
import sys
import time
from dataclasses import dataclass, field

import gevent
import gevent.pool
import orjson
from gevent import monkey

from bench.workloads import WORKLOADS

PERCENTILES = (50, 90, 99, 99.9)


@dataclass
class Result:
    scheduled: float
    status: int = 0
    error: str = ""
    ttfb: float = 0.0  # scheduled -> first body byte
    latency: float = 0.0  # scheduled -> last byte
    lag: float = 0.0  # scheduled -> the request was written
    gaps: list[float] = field(default_factory=list)  # between body chunks
    chunks: int = 0
    complete: bool = False


class Client:
    """Keep-alive sockets to one server, reused LIFO; opened on demand."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.addr = (host, port)
        self.timeout = timeout
        self.idle: list[tuple[socket.socket, bytearray]] = []
        self.opened = 0

    def connect(self) -> tuple[socket.socket, bytearray]:
        sock = socket.create_connection(self.addr, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.opened += 1
        return sock, bytearray()

    def get(self) -> tuple[socket.socket, bytearray]:
        return self.idle.pop() if self.idle else self.connect()

    def put(self, conn: tuple[socket.socket, bytearray]) -> None:
        self.idle.append(conn)

    def close(self) -> None:
        for sock, _ in self.idle:
            sock.close()
        self.idle.clear()


def request_bytes(host: str, port: int, path: str, body: bytes, key: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    if key:
        head += f"Authorization: Bearer {key}\r\n"
    return head.encode() + b"\r\n" + body


def exchange(
    client: Client, payload: bytes, res: Result, clock=time.perf_counter
) -> None:
    """Send one request on a pooled socket and read its whole answer into `res`."""
    conn = None
    reusable = False
    try:
        conn = client.get()
        res.lag = clock() - res.scheduled
        conn[0].sendall(payload)
        reusable = _read(conn[0], conn[1], res, clock)
    except (OSError, ValueError) as exc:
        res.error = type(exc).__name__
    finally:
        if conn is not None:
            if reusable:
                client.put(conn)
            else:
                conn[0].close()


def _read(sock: socket.socket, buf: bytearray, res: Result, clock) -> bool:
    """Parse status, headers and a Content-Length or chunked body; True if reusable."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        if not _fill(sock, buf):
            raise ValueError("closed before headers")
    head = bytes(buf[:end]).lower()
    del buf[: end + 4]
    res.status = int(head[9:12])
    keep = b"connection: close" not in head
    now = clock()
    if b"transfer-encoding: chunked" in head:
        last = 0.0
        body_tail = b""
        while True:
            while (eol := buf.find(b"\r\n")) < 0:
                if not _fill(sock, buf):
                    raise ValueError("closed mid-stream")
                now = clock()
            size = int(buf[:eol].split(b";", 1)[0], 16)
            while len(buf) < eol + 2 + size + 2:
                if not _fill(sock, buf):
                    raise ValueError("closed mid-chunk")
                now = clock()
            if size == 0:
                del buf[: eol + 4]  # no trailers from our servers
                break
            body_tail = bytes(buf[eol + 2 : eol + 2 + size])
            del buf[: eol + 2 + size + 2]
            if res.chunks == 0:
                res.ttfb = now - res.scheduled
            else:
                res.gaps.append(now - last)
            last = now
            res.chunks += 1
        # A chat stream ends with [DONE], a Responses stream with its Response.
        res.complete = res.status == 200 and (
            b"[DONE]" in body_tail or b"response.completed" in body_tail
        )
    else:
        size = _content_length(head)
        first = True
        while len(buf) < size:
            if first and buf:
                res.ttfb = now - res.scheduled
                first = False
            if not _fill(sock, buf):
                raise ValueError("closed mid-body")
            now = clock()
        if first:
            res.ttfb = now - res.scheduled
        del buf[:size]
        res.chunks = 1
        res.complete = res.status == 200
    res.latency = clock() - res.scheduled
    return keep


def _content_length(head: bytes) -> int:
    at = head.find(b"content-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at)
    return int(head[at + 15 : end if end >= 0 else len(head)])


def _fill(sock: socket.socket, buf: bytearray) -> bool:
    data = sock.recv(262144)
    if not data:
        return False
    buf += data
    return True


def run_rate(
    client: Client, payload: bytes, rate: float, duration: float, max_inflight: int
) -> tuple[list[Result], float]:
    """Send `rate` requests a second for `duration` seconds; wait for the answers."""
    count = max(1, int(rate * duration))
    interval = 1.0 / rate
    pool = gevent.pool.Pool(max_inflight)
    results: list[Result] = []
    start = time.perf_counter() + 0.05
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            gevent.sleep(delay)
        res = Result(scheduled)
        results.append(res)
        if pool.full():
            res.error = "inflight-limit"  # the server is far behind: count, move on
            continue
        pool.spawn(exchange, client, payload, res)
    pool.join(timeout=client.timeout + 5)
    pool.kill(block=False)
    return results, start


def run_burst(
    client: Client, payload: bytes, n: int, pre_connect: bool
) -> tuple[list[Result], float]:
    """Start `n` requests at once (each on its own socket) and hold them to the end."""
    if pre_connect:
        conns = gevent.pool.Pool(200).map(lambda _: client.connect(), range(n))
        client.idle.extend(conns)
    start = time.perf_counter() + 0.05
    results = [Result(start) for _ in range(n)]
    gevent.sleep(max(0.0, start - time.perf_counter()))
    jobs = [gevent.spawn(exchange, client, payload, r) for r in results]
    gevent.joinall(jobs, timeout=client.timeout + 5)
    gevent.killall(jobs, block=False)
    return results, start


def percentiles(values: list[float]) -> dict[str, float]:
    """P50/P90/P99/P99.9 and max, in milliseconds (nearest rank)."""
    if not values:
        return {}
    s = sorted(values)
    out = {
        f"p{p:g}": s[min(len(s) - 1, int(len(s) * p / 100))] * 1000 for p in PERCENTILES
    }
    out["max"] = s[-1] * 1000
    out["mean"] = sum(s) / len(s) * 1000
    return out


def summarise(results: list[Result], start: float, end: float) -> dict:
    ok = [r for r in results if r.complete and not r.error]
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for r in results:
        statuses[str(r.status)] = statuses.get(str(r.status), 0) + 1
        if r.error:
            errors[r.error] = errors.get(r.error, 0) + 1
    gaps = [g for r in ok for g in r.gaps]
    last = max((r.scheduled + r.latency for r in ok), default=end)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sent": len(results),
        "ok": len(ok),
        "success": len(ok) / len(results) if results else 0.0,
        "statuses": statuses,
        "errors": errors,
        "elapsed": last - start,
        "achieved_rps": len(ok) / (last - start) if last > start else 0.0,
        "latency": percentiles([r.latency for r in ok]),
        "ttfb": percentiles([r.ttfb for r in ok]),
        "gap": percentiles(gaps),
        "lag": percentiles([r.lag for r in results if not r.error]),
        "min_chunks": min((r.chunks for r in ok), default=0),
        "loadgen_cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main(argv: list[str] | None = None) -> None:
    monkey.patch_all()  # before any socket is made; the modules are patched in place
    parser = argparse.ArgumentParser(description="open-loop load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    parser.add_argument("--prefix", default="", help="path prefix before /v1/...")
    parser.add_argument("--key", default="", help="Bearer key to send")
    parser.add_argument("--rate", type=float, help="requests per second")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--burst", type=int, help="N concurrent requests at once")
    parser.add_argument("--no-pre-connect", action="store_true")
    parser.add_argument("--max-inflight", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark only loads 127.0.0.1")
    if (args.rate is None) == (args.burst is None):
        parser.error("give exactly one of --rate or --burst")
    wl = WORKLOADS[args.workload]
    payload = request_bytes(
        args.host, args.port, args.prefix + wl.path, wl.body, args.key
    )
    client = Client(args.host, args.port, args.timeout)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.burst is not None:
        results, start = run_burst(client, payload, args.burst, not args.no_pre_connect)
    else:
        results, start = run_rate(
            client, payload, args.rate, args.duration, args.max_inflight
        )
    end = time.perf_counter()
    client.close()
    out = summarise(results, start, end)
    out["loadgen_cpu_s"] -= cpu0.ru_utime + cpu0.ru_stime
    out["connections"] = client.opened
    out["workload"] = args.workload
    out["rate"] = args.rate
    out["burst"] = args.burst
    sys.stdout.write(orjson.dumps(out).decode() + "\n")


if __name__ == "__main__":
    main()
