"""CPU a request spends storing its Response, per backend:
`python -m bench.store_put [--n 2000]`.

Stores a Response the size of the responses-stream workload's (one input
message, one output message) N times through each store and prints the
calling process's CPU (time.process_time) per put, and for redis also the
redis-server's CPU (read from /proc). Compares the synchronous SQL write
(sqlite), the batched SQL store's put (a buffer append; its flush is
measured apart, per record of a 200-record batch), and redis's SET.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from crabllm_sync.db import Database
from crabllm_sync.response_store import KvStore, SqlStore, Stored
from crabllm_sync.response_writer import BufferedStore
from crabllm_sync.storage.redis import RedisStorage


def record(n: int) -> Stored:
    now = time.time()
    user = {"id": f"msg_in{n}", "type": "message", "role": "user", "content": "Say hi"}
    text = "Hello! How can I help you today? " * 3
    out = {
        "id": f"msg_out{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    response = {
        "id": f"resp_{n:048d}",
        "object": "response",
        "created_at": int(now),
        "status": "completed",
        "model": "bench-responses",
        "output": [out],
        "usage": {"input_tokens": 8, "output_tokens": 20, "total_tokens": 28},
    }
    return Stored(
        id=response["id"],
        key="bench",
        created_at=now,
        expires_at=now + 86400,
        response=response,
        input_items=[user],
        conversation=[user, out],
    )


def cpu_of(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_put(put: Callable[[Stored], None], n: int, start: int) -> float:
    """ms of this process's CPU per put."""
    records = [record(start + i) for i in range(n)]
    before = time.process_time()
    for r in records:
        put(r)
    return (time.process_time() - before) * 1000 / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    n = parser.parse_args().n
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        db.migrate()
        sql = SqlStore(db)
        print(f"sqlite, synchronous put:  {per_put(sql.put, n, 0):.3f} ms")
        batched = BufferedStore(SqlStore(db), 3600)  # flushed below, not by time
        print(f"sqlite, batched put:      {per_put(batched.put, n, n):.3f} ms")
        before = time.process_time()
        batched.writer.flush()
        flush = (time.process_time() - before) * 1000 / n
        print(f"  its flush, per record:  {flush:.3f} ms (200 a transaction)")
        batched.close()
        db.close()
    from tests.servers import RedisServer

    server = RedisServer()
    try:
        assert server.proc is not None
        storage = RedisStorage(server.url)
        kv = KvStore(storage)
        per_put(kv.put, 100, 10 * n)  # connect
        redis_before = cpu_of(server.proc.pid)
        ms = per_put(kv.put, n, 2 * n)
        redis_ms = (cpu_of(server.proc.pid) - redis_before) * 1000 / n
        print(f"redis, synchronous SET:   {ms:.3f} ms (+ {redis_ms:.3f} in redis)")
        storage.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
