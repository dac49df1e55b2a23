"""multipart/form-data bodies read block by block, so an upload is never copied.

The fields and part headers are small bytes; the file is read from its own
stream (werkzeug's spooled temporary file) as the transport asks for blocks.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file: form field name, file name, type, stream and size."""

    field: str
    filename: str
    content_type: str
    stream: IO[bytes]
    size: int


def form_fields(body: dict[str, str | list[str]]) -> list[tuple[str, str]]:
    """A {name: value or [values]} dict -> (name, value) pairs, repeats kept."""
    out: list[tuple[str, str]] = []
    for name, value in body.items():
        for v in value if isinstance(value, list) else [value]:
            out.append((name, str(v)))
    return out


class MultipartBody:
    """A file-like multipart body with a known length (so Content-Length is set).

    Reading starts the upload's stream from the beginning, which makes a fresh
    MultipartBody per attempt safe to retry.
    """

    def __init__(
        self, fields: Iterable[tuple[str, str]], upload: Upload, boundary: str
    ) -> None:
        self.boundary = boundary
        head = b"".join(_field(boundary, k, v) for k, v in fields)
        head += (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote(upload.field)}"; '
            f'filename="{_quote(upload.filename)}"\r\n'
            f"Content-Type: {upload.content_type}\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        upload.stream.seek(0)
        self._parts: list[IO[bytes]] = [
            io.BytesIO(head),
            upload.stream,
            io.BytesIO(tail),
        ]
        self._length = len(head) + upload.size + len(tail)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        out = b""
        while self._parts and (size < 0 or len(out) < size):
            block = self._parts[0].read(-1 if size < 0 else size - len(out))
            if not block:
                self._parts.pop(0)
                continue
            out += block
        return out


def _field(boundary: str, name: str, value: str) -> bytes:
    return (
        (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
        ).encode()
        + value.encode()
        + b"\r\n"
    )


def _quote(value: str) -> str:
    # As browsers do (WHATWG): escape the characters that would end the header.
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")
