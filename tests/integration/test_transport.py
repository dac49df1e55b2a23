"""providers/http.py against a real local upstream: pooling, errors, stream release."""

from __future__ import annotations

import io
import json
import select
import socketserver
import threading
from typing import Any

import pytest
import requests

from crabllm_sync.errors import (
    UpstreamError,
    UpstreamReadTimeoutError,
    UpstreamTimeoutError,
)
from crabllm_sync.providers import http, openai, pool
from tests.conftest import free_port
from tests.fakes import openai as fake_openai
from tests.upstream import POLL_INTERVAL, Reply

HEADERS = {**http.JSON_HEADERS, "authorization": "Bearer sk-up"}
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def _pool(session: Any, url: str) -> Any:
    return http.connection_pool(session, url)[0]


def _post(session: Any, url: str, **over: Any) -> Any:
    kw = {"headers": HEADERS, "timeout": 5, "provider": "up", **over}
    return http.post_json(session, url, BODY, **kw)


def test_post_json_sends_headers_and_body_and_parses_answer(upstream):
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    answer = _post(session, url)
    assert answer["choices"][0]["message"]["content"] == "echo: hi"
    rec = upstream.requests[0]
    assert rec.json == BODY
    assert rec.headers["authorization"] == "Bearer sk-up"
    assert rec.headers["content-type"] == "application/json"
    assert int(rec.headers["content-length"]) == len(rec.body)


def test_sequential_calls_reuse_one_keep_alive_connection(upstream):
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    for _ in range(3):
        _post(session, url)
    assert _pool(session, url).num_connections == 1


def test_refused_connection_is_upstream_error_not_timeout():
    session = http.make_session()
    url = f"http://127.0.0.1:{free_port()}/v1/chat/completions"
    with pytest.raises(UpstreamError) as info:
        _post(session, url)
    assert not isinstance(info.value, UpstreamTimeoutError)
    assert info.value.is_transient
    assert "connection failed" in info.value.message


def test_slow_answer_is_upstream_timeout(upstream):
    release = threading.Event()
    upstream.enqueue(Reply(json={"ok": True}, hang=release))
    session = http.make_session()
    try:
        with pytest.raises(UpstreamTimeoutError):
            _post(session, f"{upstream.url}/v1/chat/completions", timeout=0.3)
    finally:
        release.set()


def test_error_answer_keeps_its_message_and_frees_the_connection(upstream):
    upstream.enqueue(
        Reply(status=400, json={"error": {"message": "bad 'temperature'"}}),
        Reply(
            status=429,
            json={"error": {"message": "slow down"}},
            headers={"Retry-After": "2"},
        ),
    )
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    with pytest.raises(UpstreamError) as bad:
        _post(session, url)
    assert bad.value.upstream_status == 400
    assert "bad 'temperature'" in bad.value.message
    assert not bad.value.is_transient
    with pytest.raises(UpstreamError) as limited:
        _post(session, url)
    assert limited.value.upstream_status == 429
    assert limited.value.retry_after == 2.0
    assert _post(session, url)["object"] == "chat.completion"
    assert _pool(session, url).num_connections == 1


def test_invalid_json_answer_is_502(upstream):
    upstream.enqueue(Reply(body=b"<html>oops</html>", content_type="text/html"))
    session = http.make_session()
    with pytest.raises(UpstreamError) as info:
        _post(session, f"{upstream.url}/v1/chat/completions")
    assert info.value.upstream_status == 502


def _stream(session: Any, url: str) -> Any:
    return http.post_stream(
        session,
        url,
        {**BODY, "stream": True},
        headers=HEADERS,
        timeout=5,
        provider="up",
    )


def test_stream_lines_arrive_and_connection_is_reused_after_the_end(upstream):
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    for _ in range(2):
        lines = [line for line in _stream(session, url) if line]
        assert lines[-1] == b"data: [DONE]"
        assert lines[0].startswith(b"data: {")
    assert _pool(session, url).num_connections == 1


def test_stream_closed_early_drops_its_connection_and_the_next_call_works(upstream):
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    lines = _stream(session, url)
    assert next(lines).startswith(b"data: {")
    lines.close()
    assert [line for line in _stream(session, url) if line][-1] == b"data: [DONE]"


def test_stream_broken_mid_way_raises_upstream_error(upstream):
    events = fake_openai.stream_events("gpt-4o", ["a", "b", "c"])
    upstream.enqueue(Reply(events=events, drop_after=2))
    session = http.make_session()
    lines = _stream(session, f"{upstream.url}/v1/chat/completions")
    with pytest.raises(UpstreamError) as info:
        list(lines)
    assert info.value.is_transient


def test_stream_that_fails_to_start_raises_before_iteration(upstream):
    upstream.enqueue(Reply(status=503, json={"error": {"message": "overloaded"}}))
    session = http.make_session()
    with pytest.raises(UpstreamError) as info:
        _stream(session, f"{upstream.url}/v1/chat/completions")
    assert info.value.upstream_status == 503
    assert "overloaded" in info.value.message


class _KeepAliveSSE(socketserver.ThreadingTCPServer):
    """A tiny HTTP/1.1 keep-alive server answering every POST with a chunked SSE
    stream; counts the TCP connections it accepts (werkzeug's server cannot)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        self.connections = 0
        super().__init__(("127.0.0.1", 0), _SSEHandler)


class _SSEHandler(socketserver.BaseRequestHandler):
    EVENTS = [b'data: {"object":"chat.completion.chunk","choices":[]}\n\n'] * 3
    EVENTS.append(b"data: [DONE]\n\n")

    def handle(self) -> None:
        self.server.connections += 1
        buf = b""
        while True:
            while b"\r\n\r\n" not in buf:
                data = self.request.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            size = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    size = int(line.split(b":", 1)[1])
            while len(buf) < size:
                buf += self.request.recv(65536)
            buf = buf[size:]
            out = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            out += b"transfer-encoding: chunked\r\n\r\n"
            for event in self.EVENTS:
                out += b"%x\r\n%s\r\n" % (len(event), event)
            self.request.sendall(out + b"0\r\n\r\n")


def test_chunks_read_to_done_leave_the_connection_in_the_pool():
    server = _KeepAliveSSE()
    threading.Thread(
        target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True
    ).start()
    try:
        session = http.make_session()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
        for _ in range(3):
            chunks = list(openai.read_chunks(_stream(session, url), "up"))
            assert len(chunks) == 3
        assert server.connections == 1
    finally:
        server.shutdown()
        server.server_close()


def test_one_pool_per_origin_and_a_closed_one_is_replaced(upstream):
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    first = _pool(session, url)
    assert _pool(session, f"{upstream.url}/v1/embeddings") is first
    _post(session, url)
    # As when the manager disposes of an evicted pool: dropped, then closed.
    session.get_adapter(url).poolmanager.clear()
    first.close()
    assert _post(session, url)["object"] == "chat.completion"
    assert _pool(session, url) is not first


class _ClosesAfterOneAnswer(socketserver.BaseRequestHandler):
    """Answers one request with keep-alive, then closes the connection, as a
    server whose keep-alive timeout ran out does; counts its connections."""

    connections = 0

    def handle(self) -> None:
        type(self).connections += 1
        data = b""
        while b"\r\n\r\n" not in data:
            data += self.request.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += self.request.recv(65536)
        answer = b'{"ok": true}'
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: keep-alive\r\n\r\n%s"
            % (len(answer), answer)
        )


def test_a_pooled_connection_the_server_closed_is_not_reused():
    """urllib3 checks an idle connection before reuse (pool._CheapIdleCheck
    makes that one poll); without the check the second call would be sent on
    a dead socket and fail."""
    _ClosesAfterOneAnswer.connections = 0
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesAfterOneAnswer)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, args=(POLL_INTERVAL,), daemon=True
    ).start()
    try:
        session = http.make_session()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1/x"
        pool = _pool(session, url)
        assert _post(session, url) == {"ok": True}
        conn = pool.pool.queue[-1]
        assert conn.sock is not None
        # Await the server's close (the socket turns readable: EOF).
        assert select.select([conn.sock], [], [], 5)[0]
        assert not conn.is_connected
        assert _post(session, url) == {"ok": True}
        assert _ClosesAfterOneAnswer.connections == 2
    finally:
        server.shutdown()
        server.server_close()


def test_the_idle_check_is_the_os_poll_under_gevent_too(tmp_path):
    """In a gevent-patched interpreter (a gunicorn worker) the check uses the
    OS's poll, not gevent's, and still tells an open idle socket from a
    closed or readable one."""
    import subprocess
    import sys

    code = (
        "from gevent import monkey; monkey.patch_all()\n"
        "import select, socket\n"
        "from crabllm_sync.providers import pool\n"
        "assert pool._os_poll() is monkey.get_original('select', 'poll')\n"
        "assert pool._os_poll() is not select.poll\n"
        "a, b = socket.socketpair()\n"
        "conn = pool._HTTPConnection('127.0.0.1')\n"
        "conn.sock = a\n"
        "assert conn.is_connected\n"
        "b.sendall(b'junk')\n"
        "assert not conn.is_connected\n"
        "a.recv(4); b.close()\n"
        "assert not conn.is_connected\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_connection_whose_socket_was_closed_locally_is_not_reusable():
    import socket

    a, b = socket.socketpair()
    conn = pool._HTTPConnection("127.0.0.1")
    conn.sock = a
    assert conn.is_connected
    a.close()  # fileno() is now -1: poll cannot register it
    assert not conn.is_connected
    b.close()


def test_every_shape_shares_one_pool_and_no_attribute_is_hung_on_the_session(
    upstream,
):
    """JSON, stream and raw (multipart/binary) all go through send(): one
    keep-alive connection for the three; the pool cache is the adapter's."""
    from crabllm_sync.multipart import MultipartBody, Upload

    session = http.make_session()
    assert set(vars(session)) == set(vars(requests.Session()))
    url = f"{upstream.url}/v1/chat/completions"
    _post(session, url)
    assert [line for line in _stream(session, url) if line][-1] == b"data: [DONE]"
    upload = Upload(
        field="file",
        filename="a.wav",
        content_type="audio/wav",
        stream=io.BytesIO(b"RIFF" + b"\x00" * 996),
        size=1000,
    )
    body = MultipartBody([("model", "whisper-1")], upload, "b0undary")
    headers = {**HEADERS, "content-type": body.content_type}
    upstream.enqueue(Reply(json={"text": "ok"}))
    resp, chunks = http.post_raw(
        session, url, data=body, headers=headers, timeout=5, provider="up"
    )
    assert json.loads(b"".join(chunks)) == {"text": "ok"}
    assert resp.headers["content-type"] == "application/json"
    sent = upstream.requests[-1]
    # A length, not chunked: not every provider takes a chunked upload.
    assert int(sent.headers["content-length"]) == len(body) == len(sent.body)
    assert "transfer-encoding" not in sent.headers
    assert _pool(session, url).num_connections == 1


def test_read_timeout_after_sending_is_billable_and_not_transient(upstream):
    release = threading.Event()
    upstream.enqueue(Reply(json={"ok": True}, hang=release))
    session = http.make_session()
    try:
        with pytest.raises(UpstreamReadTimeoutError) as info:
            _post(session, f"{upstream.url}/v1/chat/completions", timeout=0.3)
    finally:
        release.set()
    assert info.value.billable and not info.value.is_transient


def test_credentials_sent_are_cut_from_an_error_answer_on_every_shape(upstream):
    key = "sk-proj-" + "k3Y" * 52
    said = {"error": {"message": f"bad key Bearer {key} " + "x" * 200}}
    headers = {**HEADERS, "authorization": f"Bearer {key}"}
    session = http.make_session()
    url = f"{upstream.url}/v1/chat/completions"
    calls = [
        lambda: http.post_json(
            session, url, BODY, headers=headers, timeout=5, provider="up"
        ),
        lambda: http.post_stream(
            session, url, BODY, headers=headers, timeout=5, provider="up"
        ),
        lambda: http.post_raw(
            session, url, data=b"{}", headers=headers, timeout=5, provider="up"
        ),
    ]
    for call in calls:
        upstream.enqueue(Reply(status=500, json=said))
        with pytest.raises(UpstreamError) as info:
            call()
        assert key not in info.value.message and "[redacted]" in info.value.message
