"""OTLP/protobuf encoding of finished spans (ExportTraceServiceRequest), pure.

The SDK's encoder builds a protobuf message object per span, attribute and
value, and hashes each span's Resource by JSON-dumping it: ~39 us a span, the
largest part of tracing's CPU. This one writes the wire format directly and
keeps the bytes of recent attribute pairs (a gateway's spans repeat the same
model, provider, key and operation), a few us a span. It reads only the
public ReadableSpan interface; tests check it against the SDK's encoder by
decoding both with opentelemetry-proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# SDK SpanKind (INTERNAL=0 .. CONSUMER=4) to OTLP's (UNSPECIFIED=0, INTERNAL=1, ..).
_KIND_OFFSET = 1
# Span.flags: the parent's is_remote is known (0x100), and is true (0x200).
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_CACHE_LIMIT = 4096

_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
_pack_times = struct.Struct("<BQBQ").pack  # start (field 7), end (8): fixed64
_FLAGS = (
    b"\x85\x01" + _pack_i(_HAS_IS_REMOTE),
    b"\x85\x01" + _pack_i(_HAS_IS_REMOTE | _IS_REMOTE),
)
_NO_STATUS = b"\x7a\x00"
_SMALL = tuple(bytes((n,)) for n in range(128))


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (`tag` already shifted, wire type 2)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _value(v: Any) -> bytes:
    """An AnyValue message."""
    if isinstance(v, bool):
        return b"\x10\x01" if v else b"\x10\x00"
    if isinstance(v, str):
        return _field(0x0A, v.encode())
    if isinstance(v, int):
        return b"\x18" + _varint(v)
    if isinstance(v, float):
        return b"\x21" + _pack_d(v)
    if isinstance(v, bytes):
        return _field(0x3A, v)
    if isinstance(v, Sequence):
        return _field(0x2A, b"".join(_field(0x0A, _value(x)) for x in v))
    if isinstance(v, Mapping):
        return _field(0x32, _attributes(0x0A, v))
    return b""  # None: an empty AnyValue


class Encoder:
    """Encodes batches of ReadableSpans; keeps recent attributes' bytes."""

    def __init__(self) -> None:
        # (tag, key, value) -> the framed KeyValue field.
        self._pairs: dict[tuple[int, str, Any], bytes] = {}
        # (name, kind) -> the name and kind fields.
        self._names: dict[tuple[str, int], bytes] = {}
        self._heads: dict[tuple[int, int], tuple[Any, Any, bytes, bytes]] = {}

    def _attrs(self, tag: int, attrs: Mapping[str, Any] | None) -> bytes:
        """Repeated KeyValue fields (field `tag`, already shifted)."""
        if not attrs:
            return b""
        cache = self._pairs
        out = []
        for key, v in attrs.items():
            if type(v) is list:
                v = tuple(v)
            try:
                field = cache.get((tag, key, v))
            except TypeError:  # an unhashable value: encoded each time
                out.append(_field(tag, _key_value(key, v)))
                continue
            if field is None:
                field = _field(tag, _key_value(key, v))
                if len(cache) >= _CACHE_LIMIT:
                    cache.clear()
                cache[(tag, key, v)] = field
            out.append(field)
        return b"".join(out)

    def _wire(self, w: tuple) -> bytes:
        """A span built by spans.finished, from its plain fields."""
        (
            trace_id,
            span_id,
            parent_id,
            remote,
            state,
            name,
            kind,
            start,
            end,
            attrs,
            code,
            message,
        ) = w
        head = b"\x0a\x10" + trace_id.to_bytes(16, "big")
        head += b"\x12\x08" + span_id.to_bytes(8, "big")
        if state:
            head += _field(0x1A, state.encode())
        if parent_id:
            head += b"\x22\x08" + parent_id.to_bytes(8, "big")
        named = self._names.get((name, kind))
        if named is None:
            named = _field(0x2A, name.encode()) + b"\x30" + _varint(kind)
            if len(self._names) >= _CACHE_LIMIT:
                self._names.clear()
            self._names[(name, kind)] = named
        if code or message:
            st = _field(0x12, message.encode()) if message else b""
            status = _field(0x7A, st + (b"\x18" + _varint(code) if code else b""))
        else:
            status = _NO_STATUS
        return b"".join(
            (
                head,
                named,
                _pack_times(0x39, start, 0x41, end),
                self._attrs(0x4A, attrs),
                status,
                _FLAGS[remote],
            )
        )

    def _span(self, span: Any) -> bytes:
        sc = span.context
        parent = span.parent
        parts = [
            b"\x0a\x10" + sc.trace_id.to_bytes(16, "big"),
            b"\x12\x08" + sc.span_id.to_bytes(8, "big"),
        ]
        if sc.trace_state:
            state = ",".join(f"{k}={v}" for k, v in sc.trace_state.items())
            parts.append(_field(0x1A, state.encode()))
        flags = _HAS_IS_REMOTE
        if parent is not None:
            parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
            if parent.is_remote:
                flags |= _IS_REMOTE
        parts.append(_field(0x2A, span.name.encode()))
        kind = span.kind.value + _KIND_OFFSET
        parts.append(b"\x30" + _varint(kind))
        parts.append(b"\x39" + _pack_q(span.start_time or 0))
        parts.append(b"\x41" + _pack_q(span.end_time or 0))
        parts.append(self._attrs(0x4A, span.attributes))
        if span.dropped_attributes:
            parts.append(b"\x50" + _varint(span.dropped_attributes))
        for event in span.events:
            body = _pack_q(event.timestamp or 0)
            ev = b"\x09" + body + _field(0x12, event.name.encode())
            ev += self._attrs(0x1A, event.attributes)
            parts.append(_field(0x5A, ev))
        for link in span.links:
            lc = link.context
            lk = b"\x0a\x10" + lc.trace_id.to_bytes(16, "big")
            lk += b"\x12\x08" + lc.span_id.to_bytes(8, "big")
            lk += self._attrs(0x22, link.attributes)
            link_flags = _HAS_IS_REMOTE | (_IS_REMOTE if lc.is_remote else 0)
            lk += b"\x35" + _pack_i(link_flags)
            parts.append(_field(0x6A, lk))
        status = span.status
        if status is not None:  # the SDK's encoder writes even an empty one
            st = b""
            if status.description:
                st += _field(0x12, status.description.encode())
            if status.status_code.value:
                st += b"\x18" + _varint(status.status_code.value)
            parts.append(_field(0x7A, st))
        parts.append(b"\x85\x01" + _pack_i(flags))
        return b"".join(parts)

    def _head(self, resource: Any, scope: Any) -> tuple[bytes, bytes]:
        """The encoded Resource and InstrumentationScope (with their schema
        URLs) of a group of spans, kept per pair of objects."""
        key = (id(resource), id(scope))
        got = self._heads.get(key)
        if got is not None and got[0] is resource and got[1] is scope:
            return got[2], got[3]
        res = _field(0x0A, self._attrs(0x0A, resource.attributes))
        if resource.schema_url:
            res += _field(0x1A, resource.schema_url.encode())
        sc = b""
        if scope is not None:
            body = _field(0x0A, scope.name.encode())
            if scope.version:
                body += _field(0x12, scope.version.encode())
            body += self._attrs(0x1A, scope.attributes)
            sc = _field(0x0A, body)
            if scope.schema_url:
                sc += _field(0x1A, scope.schema_url.encode())
        if len(self._heads) >= 64:
            self._heads.clear()
        # The entry holds the objects, so their ids are not reused.
        self._heads[key] = (resource, scope, res, sc)
        return res, sc

    def encode(self, spans: Iterable[Any]) -> bytes:
        """An ExportTraceServiceRequest holding `spans`, serialised."""
        groups: dict[tuple[int, int], tuple[Any, Any, list[bytes]]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope
            key = (id(resource), id(scope))
            group = groups.get(key)
            if group is None:
                group = groups[key] = (resource, scope, [])
            wire = getattr(span, "wire", None)
            group[2].append(self._wire(wire) if wire else self._span(span))
        out = []
        for resource, scope, encoded in groups.values():
            res, sc = self._head(resource, scope)
            scope_spans = sc + b"".join(
                (b"\x12" + (_SMALL[n] if (n := len(s)) < 128 else _varint(n)) + s)
                for s in encoded
            )
            out.append(_field(0x0A, res + _field(0x12, scope_spans)))
        return b"".join(out)


def _key_value(key: str, v: Any) -> bytes:
    return _field(0x0A, key.encode()) + _field(0x12, _value(v))


def _attributes(tag: int, attrs: Mapping[str, Any]) -> bytes:
    return b"".join(_field(tag, _key_value(k, v)) for k, v in attrs.items())
