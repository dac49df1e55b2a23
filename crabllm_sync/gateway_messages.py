"""The Anthropic Messages endpoints of the Gateway: passed through to
deployments that take the format as it is (formats/messages.py), and
count_tokens, which routes without the breaker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from crabllm_sync import providers
from crabllm_sync.errors import UnsupportedError
from crabllm_sync.extensions import find
from crabllm_sync.extensions.rate_limit import RateLimit
from crabllm_sync.formats import messages as messages_format

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway
    from crabllm_sync.streams import Relay

Headers = Mapping[str, str]
# Counting tokens generates nothing: no usage to charge, still one logged request.
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class MessagesEndpoints:
    """Mixed into Gateway (gateway.py): its lifecycle, for the Messages format."""

    def serves_natively(self: Gateway, requested: Any, fmt: str) -> bool:
        """Whether every deployment of the requested model takes format `fmt`
        as it is (its adapter declares it in NATIVE_FORMATS)."""
        if not isinstance(requested, str):
            return False
        deps = self.registry.models.get(self.registry.aliases.get(requested, requested))
        return bool(deps) and all(fmt in providers.native_formats(d.kind) for d in deps)

    def messages_native(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        client_headers: Headers,
    ) -> dict[str, Any]:
        """An Anthropic Messages call passed through to a native deployment."""
        usage = messages_format.answer_usage
        return self.unary(ctx, "messages", body, (client_headers,), usage_of=usage)

    def messages_native_stream(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        client_headers: Headers,
    ) -> Relay[Any]:
        """Open a native Anthropic stream (first event read before returning)."""
        observer = messages_format.NativeObserver(ctx, self.redact)
        return self.stream(
            ctx, "messages_stream", body, body, observer, (client_headers,)
        )

    def count_tokens(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        client_headers: Headers,
    ) -> dict[str, Any]:
        """Anthropic's count_tokens, on deployments that take messages natively.

        Counting generates nothing: only the key's requests-per-minute limit
        applies, and a failure does not count toward the breaker the
        generation endpoints share.
        """
        with self.finish.guard(ctx):
            self.resolve(ctx, body)
            for dep in self.registry.models[ctx.model]:
                # Other adapters' count_tokens (the mock's) are not this endpoint.
                if messages_format.FORMAT not in providers.native_formats(dep.kind):
                    raise UnsupportedError(
                        f"provider '{dep.provider}' does not support the "
                        "count_tokens endpoint",
                        code="unsupported_endpoint",
                    )
            limits = find(self.extensions, RateLimit)
            if limits is not None:
                limits.admit_request(ctx)
            result = self.route(
                ctx, "count_tokens", body, (client_headers,), breaker=False
            )
        ctx.usage = dict(NO_USAGE)
        self.finish.succeeded(ctx, body, None)
        return result
