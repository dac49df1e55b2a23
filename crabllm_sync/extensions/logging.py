"""One structured log line per request (key name, never the key; no prompt text
unless `log_prompts`), as `k=v` pairs or JSON."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import orjson

from crabllm_sync.config import LoggingExtension
from crabllm_sync.extensions import Extension
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.pricing import NANOS_PER_USD

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

log = logging.getLogger(__name__)

# Longest string field written (the requested model, the request id, ...):
# a client chooses some of them, so a line stays one line of bounded size.
MAX_FIELD = 256
# Written bare in text lines: printable ASCII but space, `"`, `=` and `\`.
_BARE = re.compile(r"[!#-<>-\[\]-~]+")
# What orjson leaves raw but a terminal or a log pipeline may act on: DEL, the
# C1 controls (0x9b is a one-byte ESC [) and the Unicode line separators.
_RAW_CONTROLS = re.compile("[\x7f-\x9f\u2028\u2029]")


class RequestLog(Extension):
    name = "logging"

    def __init__(self, section: LoggingExtension | None) -> None:
        self.json = bool(section and section.json_format)
        self.log_prompts = bool(section and section.log_prompts)
        if section is not None:
            logging.getLogger("crabllm_sync").setLevel(section.level.upper())

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self._emit(ctx, body, None)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self._emit(ctx, None, error)

    def record(
        self,
        ctx: RequestContext,
        body: dict[str, Any] | None,
        error: GatewayError | None,
    ) -> dict[str, Any]:
        """The fields of the line."""
        charge = charge_of(ctx)
        fields: dict[str, Any] = {
            "event": "request",
            "id": ctx.request_id,
            "key": ctx.principal.name or "-",
            "endpoint": ctx.endpoint,
            "model": ctx.model or ctx.requested_model or "-",
            "provider": ctx.provider or "-",
            "status": ctx.status,
            "ms": round((time.monotonic() - ctx.started) * 1000, 1),
            "stream": ctx.stream,
            "cache": "hit" if ctx.cache_hit else "-",
            "prompt_tokens": charge.usage.prompt_tokens,
            "completion_tokens": charge.usage.output,
            "cost_usd": charge.cost_nanos / NANOS_PER_USD,
        }
        if charge.usage.estimated:
            fields["estimated"] = True
        if error is not None:
            fields["error"] = error.code
        fields = {k: _capped(v) for k, v in fields.items()}
        if self.log_prompts and body is not None:
            prompt = body.get("messages", body.get("input"))
            if prompt is not None:
                fields["prompt"] = prompt
        return fields

    def _emit(
        self,
        ctx: RequestContext,
        body: dict[str, Any] | None,
        error: GatewayError | None,
    ) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        fields = self.record(ctx, body, error)
        if self.json:
            log.info("%s", _json(fields))
        else:
            log.info("%s", " ".join(f"{k}={_plain(v)}" for k, v in fields.items()))


def _capped(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_FIELD:
        return value[:MAX_FIELD] + "..."
    return value


def _json(value: Any) -> str:
    """JSON with every control character escaped: the line stays one line."""
    text = orjson.dumps(value).decode()
    return _RAW_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _plain(value: Any) -> str:
    if isinstance(value, str) and _BARE.fullmatch(value):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return _json(value)
