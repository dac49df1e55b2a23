"""Response cache for non-streamed chat and embeddings, on the shared storage.

Keyed by a hash of the canonical request (resolved model, stable JSON) and,
unless `shared = true`, the virtual key, so one team never gets another's answer.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import orjson

from crabllm_sync.config import CacheExtension
from crabllm_sync.extensions import Extension, guarded, key_name
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext

log = logging.getLogger(__name__)

PREFIX = "cache:"
ENDPOINTS = ("chat", "embeddings", "responses")
# Fields that change how the answer is delivered, not what it is.
_IGNORED = ("model", "stream", "stream_options")


def request_hash(endpoint: str, model: str, body: dict[str, Any]) -> str:
    """sha256 of the canonical request: endpoint, resolved model, sorted JSON."""
    canonical = {k: v for k, v in body.items() if k not in _IGNORED}
    data = orjson.dumps(
        {"endpoint": endpoint, "model": model, "body": canonical},
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(data).hexdigest()


def clear(storage: Storage) -> int:
    """Delete every cached response; how many were deleted."""
    entries = storage.list_prefix(PREFIX)
    for k, _ in entries:
        storage.delete(k)
    return len(entries)


class Cache(Extension):
    name = "cache"

    def __init__(self, section: CacheExtension, storage: Storage) -> None:
        self.ttl = section.ttl_seconds
        self.shared = section.shared
        self.fail_open = section.fail_open
        self.storage = storage

    def _key(self, ctx: RequestContext, body: dict[str, Any]) -> str | None:
        if ctx.stream or ctx.endpoint not in ENDPOINTS:
            return None
        scope = "shared" if self.shared else f"key={key_name(ctx.principal)}"
        return f"{PREFIX}{scope}:{request_hash(ctx.endpoint, ctx.model, body)}"

    def on_cache_lookup(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        key = self._key(ctx, body)
        if key is None:
            return None
        ctx.state["cache.key"] = key
        if ctx.no_cache:
            return None
        raw = guarded("cache", self.fail_open, lambda: self.storage.get(key), None)
        if raw is None:
            return None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("cache: dropping an unreadable entry")
            return None

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        key = ctx.state.get("cache.key")
        if key is None or ctx.cache_hit or response is None or ctx.status != 200:
            return
        value = orjson.dumps(response)
        # After the answer is decided a store failure only costs a future miss.
        guarded("cache", True, lambda: self.storage.set(key, value, self.ttl), None)
