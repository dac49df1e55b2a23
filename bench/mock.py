"""A fast mock OpenAI upstream: canned chat, 20-chunk streams and embeddings.

A raw gevent StreamServer speaking just enough HTTP/1.1 (keep-alive,
Content-Length requests, chunked streamed answers) that it is never the
bottleneck. Every answer is prebuilt bytes; the only per-request work is finding
the path, a model name ending in "slow" (wait between chunks) and include_usage.

    python -m bench.mock --port 0        # prints "ready PORT" once listening
"""

from __future__ import annotations

import argparse
import socket
import sys

import gevent
import orjson
from gevent import monkey
from gevent.server import StreamServer

CHUNKS = 20
EMBED_DIMS = 1536

_CHAT = orjson.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi! How can I help?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    }
)

_EMBED = orjson.dumps(
    {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": 0,
                "embedding": [round((i % 97) / 97 - 0.5, 6) for i in range(EMBED_DIMS)],
            }
        ],
        "model": "bench-embed",
        "usage": {"prompt_tokens": 10, "total_tokens": 10},
    }
)

_NOT_FOUND = orjson.dumps({"error": {"message": "no such path", "type": "bench"}})


def _chunk(i: int) -> dict:
    delta: dict = {"content": f"tok{i} "}
    if i == 0:
        delta["role"] = "assistant"
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "delta": {} if i == CHUNKS - 1 else delta,
                "finish_reason": "stop" if i == CHUNKS - 1 else None,
            }
        ],
    }


def _frame(data: bytes) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


_EVENTS = [_frame(b"data: " + orjson.dumps(_chunk(i)) + b"\n\n") for i in range(CHUNKS)]
_USAGE = _frame(
    b"data: "
    + orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "bench-model",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 20, "total_tokens": 29},
        }
    )
    + b"\n\n"
)
_DONE = _frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\ncache-control: no-cache\r\n\r\n"
)


def _unary(status: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


_CHAT_RESP = _unary(b"200 OK", _CHAT)
_EMBED_RESP = _unary(b"200 OK", _EMBED)
_404_RESP = _unary(b"404 Not Found", _NOT_FOUND)


class Mock:
    """Answers on a socket until the client closes it; slow streams wait `delay`."""

    def __init__(self, slow_delay: float) -> None:
        self.slow_delay = slow_delay

    def handle(self, sock: socket.socket, _addr: object) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lower = head.lower()
                at = lower.find(b"content-length:")
                size = 0
                if at >= 0:
                    end = lower.find(b"\r\n", at)
                    size = int(lower[at + 15 : end if end > 0 else None])
                while len(buf) < size:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                body, buf = buf[:size], buf[size:]
                self._answer(sock, head.split(b" ", 2)[1], body)
                if b"connection: close" in lower:
                    return
        except OSError:
            return
        finally:
            sock.close()

    def _answer(self, sock: socket.socket, path: bytes, body: bytes) -> None:
        path = path.split(b"?", 1)[0]
        if path.endswith(b"/chat/completions"):
            if b'"stream":true' in body or b'"stream": true' in body:
                self._stream(sock, body)
            else:
                sock.sendall(_CHAT_RESP)
        elif path.endswith(b"/embeddings"):
            sock.sendall(_EMBED_RESP)
        else:
            sock.sendall(_404_RESP)

    def _stream(self, sock: socket.socket, body: bytes) -> None:
        delay = self.slow_delay if b'slow"' in body else 0.0
        usage = b'"include_usage":true' in body or b'"include_usage": true' in body
        if delay:
            sock.sendall(_STREAM_HEAD)
            for event in _EVENTS:
                gevent.sleep(delay)
                sock.sendall(event)
            sock.sendall((_USAGE if usage else b"") + _DONE)
        else:
            # No delay: write the whole answer at once, as a fast upstream would.
            sock.sendall(
                _STREAM_HEAD + b"".join(_EVENTS) + (_USAGE if usage else b"") + _DONE
            )


def main(argv: list[str] | None = None) -> None:
    monkey.patch_all()  # before any socket is made; the modules are patched in place
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slow-ms", type=float, default=50.0)
    args = parser.parse_args(argv)
    mock = Mock(args.slow_ms / 1000)
    server = StreamServer((args.host, args.port), mock.handle, backlog=4096)
    server.init_socket()
    server.start()
    print(f"ready {server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
