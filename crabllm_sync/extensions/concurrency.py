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
from crabllm_sync.extensions import Extension, guarded, key_limit, key_name
from crabllm_sync.extensions.held import Lease, release
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
        lease = guarded(
            "concurrency",
            self.fail_open,
            lambda: self._acquire(key, limit, ctx.request_id),
            _OUTAGE,
        )
        if lease is _OUTAGE:
            return
        if lease is None:
            raise RateLimitError(
                f"Too many parallel requests for this key: limit {limit}. "
                "Retry when one of them has finished.",
                retry_after=1.0,
            )
        ctx.state[_STATE] = lease  # released by on_response or on_error

    def _acquire(self, key: str, limit: int, request_id: str) -> Lease | None:
        # Start at a request-dependent slot so parallel requests rarely collide.
        start = zlib.crc32(request_id.encode()) % limit
        for i in range(limit):
            slot = f"conc:{key}:{(start + i) % limit}"
            if self.storage.incr(slot, 1, self.lease_ttl) == 1:
                return Lease(self.storage, slot, self.lease_ttl, time.monotonic())
        return None

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        lease: Lease | None = ctx.state.get(_STATE)
        if lease is None:
            return
        now = time.monotonic()
        if now - lease.renewed >= self.renew_every:
            lease.renew(now)

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        release(ctx, _STATE)

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        release(ctx, _STATE)
