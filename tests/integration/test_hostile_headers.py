"""Header, request-line and size abuse through a real gunicorn (gevent) server.

gunicorn refuses an oversized request line (> 4094 bytes), header field
(> 8190 bytes) or more than 100 header fields itself, before the app, with a
short plain 400/414 and a closed connection; we keep those limits (they are the
cheap line of defence against header floods) and accept that answer as the
documented exception to "every error is JSON" (docs/security.md). Everything
within the limits reaches the app and gets its JSON error. A body announced
over max_body_size is refused with 413 before it is read.
"""

from __future__ import annotations

import json
import socket

import httpx
import pytest

from tests.conftest import write_toml

KEY = "sk-headers-0123456789"
ADMIN = "admin-headers-" + "z" * 32
MAX_BODY = 64 * 1024
CHAT = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def server(gunicorn, tmp_path):
    config = write_toml(
        tmp_path / "crabllm.toml",
        f"""
admin_token = "{ADMIN}"
max_body_size = {MAX_BODY}

[providers.m]
kind = "mock"
models = ["mock"]

[[keys]]
name = "team"
key = "{KEY}"
""",
    )
    return gunicorn(config, workers=1)


def raw(
    srv, request: bytes, timeout: float = 20.0
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; read the whole answer (until the server closes or it ends)."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines[1:])
        }
        want = int(headers.get("content-length", -1))
        while want < 0 or len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def get(path: str, headers: list[tuple[str, str]]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{head}Connection: close\r\n\r\n".encode()


def still_serves(srv) -> None:
    r = httpx.post(
        f"{srv.url}/v1/chat/completions",
        json=CHAT,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=20,
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "Mock reply: hi"


def json_error(body: bytes) -> dict:
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def anthropic_error(body: bytes) -> dict:
    doc = json.loads(body)
    assert doc["type"] == "error" and set(doc["error"]) == {"type", "message"}
    return doc["error"]


BEARER_KEY = ("Authorization", f"Bearer {KEY}")
BEARER_ADMIN = ("Authorization", f"Bearer {ADMIN}")


def test_headers_within_gunicorns_limits_get_the_apps_json(server):
    long_bogus = ("Authorization", "Bearer " + "a" * 7000)
    status, _, body = raw(server, get("/v1/models", [long_bogus]))
    assert status == 401 and json_error(body)["code"] == "invalid_api_key"

    many = [(f"X-Filler-{i}", "v" * 60) for i in range(90)]
    status, _, body = raw(server, get("/v1/models", [*many, BEARER_KEY]))
    assert status == 200 and json.loads(body)["data"][0]["id"] == "mock"

    huge_value = ("X-Anything", "y" * 8000)
    status, _, body = raw(server, get("/v1/models", [huge_value, BEARER_KEY]))
    assert status == 200

    req = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: "
        + b"k" * 7000
        + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    status, _, body = raw(server, req)
    assert status == 401 and anthropic_error(body)["type"] == "authentication_error"

    bad_bytes = (
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\n"
    )
    status, _, body = raw(server, bad_bytes + b"Connection: close\r\n\r\n")
    assert status == 401 and json_error(body)
    still_serves(server)


FRAMING = [
    (get("/v1/models", [("Authorization", "Bearer " + "a" * 9000)]), 431),
    (get("/v1/models", [("Authorization", "Bearer " + "a" * 100_000)]), 431),
    (get("/v1/models", [(f"X-H{i}", "v") for i in range(200)]), 431),
    (get("/v1/admin/keys/" + "a" * 10_000, [BEARER_ADMIN]), 400),
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
    (
        b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        400,
    ),
    (b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
]


def test_gunicorn_refuses_oversized_or_broken_framing_itself(server):
    """gunicorn's own short answer (not JSON, by decision: see the docstring),
    a complete response rather than a reset, and the worker serves on."""
    for request_bytes, status in FRAMING:
        got, headers, body = raw(server, request_bytes)
        assert got == status, (request_bytes[:60], body[:200])
        assert headers.get("connection", "").lower() == "close"
        assert b"Traceback" not in body
    still_serves(server)


TARGETS = [
    b"/v1/admin/keys/../../etc/passwd",
    b"/v1/admin/keys/..%2F..%2Fetc%2Fpasswd",
    b"/v1/admin/keys/%2e%2e",
    b"/v1/admin/keys/a%2Fb",
    b"/v1/admin/keys/a%00b",
    b"/v1/admin/keys/a\x00b",
    "/v1/admin/keys/été".encode(),
    b"/v1/admin/keys/\xff\xfe",
    b"/v1/admin/keys/" + b"a" * 3900,
    b"/v1/admin/keys/a%0D%0AX-Injected:%201",
]


def test_key_name_abuse_in_the_path_through_gunicorn(server):
    for method in (b"GET", b"DELETE", b"PATCH"):
        for target in TARGETS:
            req = (
                method
                + b" "
                + target
                + f" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                + b"Connection: close\r\n\r\n{}"
            )
            status, headers, body = raw(server, req)
            assert 400 <= status < 500, (method, target[:40], status, body[:200])
            assert "x-injected" not in headers
            if body.startswith(b"{"):
                json_error(body)  # the app answered: its JSON error
            else:  # gunicorn refused the request line itself
                assert status == 400 and b"Bad Request" in body, body[:200]
    still_serves(server)


def test_announced_body_over_the_limit_is_413_before_it_is_sent(server):
    """Content-Length says 100 MB and 9 bytes follow: the answer comes at once
    (raw() would time out if the gateway waited for the body)."""
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {KEY}\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        + b'{"model":'
    )
    status, _, body = raw(server, req)
    assert status == 413 and json_error(body)["code"] == "request_too_large"
    req = (
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {KEY}\r\n".encode()
        + b"Content-Type: multipart/form-data; boundary=b\r\n"
        + b"Content-Length: 104857600\r\n\r\n--b\r\n"
    )
    status, _, body = raw(server, req)
    assert status == 413 and json_error(body)["code"] == "request_too_large"
    req = req.replace(b"/v1/audio/transcriptions", b"/v1/messages/count_tokens")
    status, _, body = raw(server, req)
    assert status == 413 and anthropic_error(body)["type"] == "request_too_large"
    still_serves(server)


def _chunked(path: str, ctype: str, body: bytes) -> bytes:
    chunks = b"".join(
        f"{len(body[i : i + 8192]):x}\r\n".encode() + body[i : i + 8192] + b"\r\n"
        for i in range(0, len(body), 8192)
    )
    return (
        (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: {ctype}\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )


def test_chunked_body_over_the_limit_is_413_not_cut_short(server):
    """Found here: werkzeug stops a body without Content-Length at
    max_content_length silently, so a chunked body over the limit was parsed
    cut short (400 'not valid JSON', or worse a truncated upload)."""
    pad = b" " * (MAX_BODY + 10_000)
    body = json.dumps(CHAT).encode() + pad  # whole: valid JSON; cut: also valid
    status, _, out = raw(
        server, _chunked("/v1/chat/completions", "application/json", body)
    )
    assert status == 413, out[:200]
    assert json_error(out)["code"] == "request_too_large"

    part = (
        b'--bb\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
        b'--bb\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
        b"Content-Type: audio/wav\r\n\r\n" + b"\0" * (MAX_BODY * 2) + b"\r\n--bb--\r\n"
    )
    ctype = "multipart/form-data; boundary=bb"
    status, _, out = raw(server, _chunked("/v1/audio/transcriptions", ctype, part))
    assert status == 413, out[:200]

    # Under the limit, a chunked body is read whole and served.
    small = json.dumps(CHAT).encode() + b" " * 1000
    status, _, out = raw(
        server, _chunked("/v1/chat/completions", "application/json", small)
    )
    assert status == 200, out[:200]
    still_serves(server)
