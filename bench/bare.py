"""The floor: a bare Flask + gevent + requests pass-through with no features.

No auth, no routing, no validation, no usage: read the body, POST it upstream on a
pooled keep-alive session, answer with the upstream's bytes (streams relayed as
they arrive). What the gateway adds over this is the cost of its features.

    BENCH_UPSTREAM=http://127.0.0.1:PORT gunicorn -k gevent -w 2 bench.bare:application
"""

from __future__ import annotations

import os

import orjson
import requests
from flask import Flask, Response, request
from requests.adapters import HTTPAdapter


def create_app(upstream: str) -> Flask:
    app = Flask("bare")
    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_maxsize=1000, max_retries=0))
    headers = {"content-type": "application/json", "authorization": "Bearer sk-up"}

    def relay(path: str) -> Response:
        data = request.get_data()
        stream = bool(orjson.loads(data).get("stream"))
        resp = session.post(
            upstream + path, data=data, headers=headers, stream=stream, timeout=30
        )
        if not stream:
            return Response(
                resp.content, resp.status_code, content_type="application/json"
            )

        def body():
            try:
                yield from resp.iter_content(chunk_size=None)
            finally:
                resp.close()

        return Response(body(), resp.status_code, content_type="text/event-stream")

    app.add_url_rule(
        "/v1/chat/completions",
        "chat",
        lambda: relay("/v1/chat/completions"),
        methods=["POST"],
    )
    app.add_url_rule(
        "/v1/embeddings",
        "embeddings",
        lambda: relay("/v1/embeddings"),
        methods=["POST"],
    )
    return app


application = create_app(os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8000"))
