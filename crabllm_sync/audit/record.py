"""The request log record of a finished request (pure: no I/O).

Bodies are kept only when `[extensions.audit] bodies = true`: secrets are
cut (the config's credentials and keys, and the value of any field whose
name says it holds one), and each body is cut at `max_body_bytes`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from crabllm_sync.extensions.accounting import charge_of

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

REDACTED = "[redacted]"
TRUNCATED = "…[truncated]"
# Field names whose values are credentials wherever they appear in a body.
SECRET_FIELD = re.compile(
    r"(api[_-]?key|authorization|secret|password|token$|access[_-]?key)", re.I
)
MAX_ERROR_MESSAGE = 2000


def log_row(ctx: RequestContext, error: GatewayError | None) -> dict[str, Any]:
    """The audit_log row of a finished request (and its rollup's inputs)."""
    now = time.monotonic()
    charge = charge_of(ctx)
    u = charge.usage
    ttfb = None if ctx.first_byte is None else (ctx.first_byte - ctx.started) * 1000
    return {
        "request_id": ctx.request_id,
        "ts": ctx.timestamp,
        "key_name": ctx.principal.name or "-",
        "requested_model": ctx.requested_model or "",
        "model": ctx.model or ctx.requested_model or "",
        # A failure names the last provider tried: the one that failed.
        "provider": ctx.provider or (ctx.tried[-1] if ctx.tried else ""),
        "endpoint": ctx.endpoint,
        "status": ctx.status,
        "error_code": None if error is None else (error.code or error.type),
        "error_message": None if error is None else error.message[:MAX_ERROR_MESSAGE],
        "latency_ms": round((now - ctx.started) * 1000, 3),
        "ttfb_ms": None if ttfb is None else round(ttfb, 3),
        "input_tokens": u.input + u.cache_read + u.cache_write,
        "output_tokens": u.output,
        "cost_nanos": charge.cost_nanos,
        "cache_hit": ctx.cache_hit,
        "stream": ctx.stream,
        "attempts": len(ctx.tried),
        "tried": ",".join(ctx.tried),
    }


def body_text(value: Any, redact: Callable[[str], str], max_bytes: int) -> str | None:
    """`value` as JSON, secrets cut, at most `max_bytes` UTF-8 bytes."""
    if value is None:
        return None
    text = redact(orjson.dumps(_scrub(value), default=str).decode())
    raw = text.encode()
    if len(raw) <= max_bytes:
        return text
    keep = max_bytes - len(TRUNCATED.encode())
    return raw[:keep].decode(errors="ignore") + TRUNCATED


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                REDACTED if isinstance(k, str) and SECRET_FIELD.search(k) else _scrub(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value
