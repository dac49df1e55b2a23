"""Check TCP_NODELAY on both of the gateway's sockets, as deployed.

A WSGI app run under gunicorn's gevent worker with the gateway's settings: it
reports the option on the client socket it was handed, and on the pooled
upstream socket that crabllm_sync.providers.http opened for a call to the mock.
Nagle plus delayed ACK can hold each small SSE write for ~40 ms.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import orjson

from crabllm_sync.providers import http


def _nodelay(sock: Any) -> int | None:
    if sock is None:
        return None
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def application(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    client = _nodelay(environ.get("gunicorn.socket"))
    url = os.environ["BENCH_UPSTREAM"] + "/v1/embeddings"
    session = http.make_session()
    http.post_json(
        session,
        url,
        {"model": "m", "input": "x"},
        headers={},
        timeout=5,
        provider="mock",
    )
    pool, _ = http.connection_pool(session, url)
    conn = pool.pool.get_nowait()  # the keep-alive connection just used
    body = orjson.dumps({"client": client, "upstream": _nodelay(conn.sock)})
    start_response("200 OK", [("content-type", "application/json")])
    return [body]
