"""One usage record per request, written to the `usage` table in batches
through the shared BatchWriter (extensions/batching.py): requests only append
to a buffer, a background flusher writes it, close() writes the rest.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from crabllm_sync.config import Config, UsageExtension
from crabllm_sync.db import Database
from crabllm_sync.extensions import Extension
from crabllm_sync.extensions.accounting import charge_of
from crabllm_sync.extensions.batching import (  # noqa: F401 (re-exported)
    CLOSE_TIMEOUT,
    FLUSH_BUSY_MS,
    MAX_BUFFER,
    MAX_RETRY_DELAY,
    BatchWriter,
)

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError


def open_usage_database(config: Config) -> Database | None:
    """The usage database, when there is one to write to.

    With sqlite or redis storage (or `[storage] database`, or an explicit
    [extensions.usage] section), records go to the SQL database; memory
    storage alone records nothing.
    """
    s = config.storage
    if s.kind == "memory" and not s.database and config.extensions.usage is None:
        return None
    db = Database.for_config(config)
    db.migrate()
    return db


def usage_row(ctx: RequestContext) -> dict[str, Any]:
    """The usage table row of a finished request."""
    charge = charge_of(ctx)
    u = charge.usage
    return {
        "request_id": ctx.request_id,
        "ts": ctx.timestamp,
        "key_name": ctx.principal.name,
        "model": ctx.model or ctx.requested_model or "-",
        "provider": ctx.provider,
        "endpoint": ctx.endpoint,
        "input_tokens": u.input,
        "cache_read_tokens": u.cache_read,
        "cache_write_tokens": u.cache_write,
        "output_tokens": u.output,
        "reasoning_tokens": u.reasoning,
        "estimated": u.estimated,
        "cost_nanos": charge.cost_nanos,
        "images": u.images,
        "characters": u.characters,
        "audio_ms": u.audio_ms,
        "latency_ms": round((time.monotonic() - ctx.started) * 1000, 3),
        "status": ctx.status,
        "stream": ctx.stream,
        "cache_hit": ctx.cache_hit,
    }


class UsageRecorder(BatchWriter, Extension):
    name = "usage"

    def __init__(self, section: UsageExtension | None, db: Database) -> None:
        section = section or UsageExtension()
        super().__init__(
            "usage", db.insert_usage, section.flush_interval, section.batch_size
        )
        self.db = db

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self.add(usage_row(ctx))

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self.add(usage_row(ctx))
