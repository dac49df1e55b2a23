"""The Extension base (five no-op hooks) and build_extensions() in a fixed order."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crabllm_sync.config import Config
from crabllm_sync.storage import Storage

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.errors import GatewayError


class Extension:
    """Hooks run around each request; override the ones you need."""

    name = "extension"

    def on_request(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """Before routing; raise a GatewayError to refuse the request."""

    def on_cache_lookup(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Return a stored response to answer without calling a provider."""
        return None

    def on_chunk(self, ctx: RequestContext, chunk: dict[str, Any]) -> None:
        """Each streamed chunk, before it is sent."""

    def on_response(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        """Once per success; `response` is None for streams (ctx.usage is set)."""

    def on_error(self, ctx: RequestContext, error: GatewayError) -> None:
        """Once per failure, before the error is answered."""


def build_extensions(config: Config, storage: Storage) -> list[Extension]:
    """The configured extensions, in the order they must run."""
    return []
