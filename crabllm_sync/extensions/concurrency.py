"""max_parallel_requests per key: slot leases with a TTL on the shared storage.

A key with limit N has N slots. A request takes a free slot with an atomic
incr (1 means it was free) and deletes it when it ends, however it ends; a
worker that dies mid-request loses its lease to the TTL, so a slot never leaks.
"""

from __future__ import annotations

import time
import zlib
from typing import TYPE_CHECKING, Any

from crabllm_sync.config import Config
from crabllm_sync.errors import RateLimitError
from crabllm_sync.extensions import Extension, guarded, key_limit, key_name, quietly
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError

_STATE = "concurrency"
_OUTAGE: Any = object()  # storage down and fail_open: no slot, no refusal
# Streams renew their lease this often (seconds) so a long stream keeps it;
# more often when the lease itself is shorter (a third of it).
RENEW_EVERY = 30.0


class Concurrency(Extension):
    name = "concurrency"

    def __init__(self, config: Config, storage: Storage) -> None:
        self.config = config
        self.storage = storage
        section = config.extensions.rate_limit
        self.fail_open = section.fail_open if section else False
        # By default longer than any non-streamed request may take; a shorter
        # lease frees a dead host's slots sooner (docs/extensions.md).
        lease = section.lease_seconds if section else None
        self.lease_ttl = lease or config.routing.request_deadline + 60.0
        self.renew_every = min(RENEW_EVERY, self.lease_ttl / 3)

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        limit = key_limit(self.config, ctx.principal, "max_parallel_requests")
        if limit is None:
            return
        key = key_name(ctx.principal)
        slot = guarded(
            "concurrency",
            self.fail_open,
            lambda: self._acquire(key, limit, ctx.request_id),
            _OUTAGE,
        )
        if slot is _OUTAGE:
            return
        if slot is None:
            raise RateLimitError(
                f"Too many parallel requests for this key: limit {limit}. "
                "Retry when one of them has finished.",
                retry_after=1.0,
            )
        ctx.state[_STATE] = (slot, time.monotonic())

    def _acquire(self, key: str, limit: int, request_id: str) -> str | None:
        # Start at a request-dependent slot so parallel requests rarely collide.
        start = zlib.crc32(request_id.encode()) % limit
        for i in range(limit):
            slot = f"conc:{key}:{(start + i) % limit}"
            if self.storage.incr(slot, 1, self.lease_ttl) == 1:
                return slot
        return None

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        held = ctx.state.get(_STATE)
        if held is None:
            return
        slot, renewed = held
        now = time.monotonic()
        if now - renewed >= self.renew_every:
            ctx.state[_STATE] = (slot, now)
            quietly(
                "concurrency",
                lambda: self.storage.set(slot, b"1", self.lease_ttl),
            )

    def _release(self, ctx: RequestContext) -> None:
        held = ctx.state.pop(_STATE, None)
        if held is not None:
            quietly("concurrency", lambda: self.storage.delete(held[0]))

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        self._release(ctx)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        self._release(ctx)
