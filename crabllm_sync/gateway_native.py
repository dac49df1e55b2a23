"""The Gateway's endpoints for formats a deployment may take as they are:
Anthropic Messages and OpenAI Responses passed through to deployments whose
adapters declare the format (providers.native_formats), and token counts,
which route without the breaker (or are estimated where no deployment counts).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from crabllm_sync import providers
from crabllm_sync.extensions import find
from crabllm_sync.extensions.rate_limit import RateLimit
from crabllm_sync.formats import messages as messages_format
from crabllm_sync.formats.responses import native as responses_native

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway
    from crabllm_sync.streams import Relay

Headers = Mapping[str, str]
# Counting tokens generates nothing: no usage to charge, still one logged request.
NO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


class NativeEndpoints:
    """Mixed into Gateway (gateway.py): its lifecycle, for native formats."""

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

    def responses_native(
        self: Gateway, ctx: RequestContext, body: dict[str, Any]
    ) -> dict[str, Any]:
        """A Responses API call passed through to a native deployment."""
        usage = responses_native.answer_usage
        return self.unary(ctx, "responses", body, usage_of=usage)

    def responses_native_stream(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> Relay[Any]:
        """Open a native Responses stream (first event read before returning)."""
        observer = responses_native.NativeObserver(ctx, self.redact, on_done)
        return self.stream(ctx, "responses_stream", body, body, observer)

    def count_tokens(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        client_headers: Headers,
    ) -> dict[str, Any]:
        """Anthropic's count_tokens: the provider's count on deployments that
        take messages natively, else the gateway's estimate."""
        estimate = messages_format.estimate_count(body)
        return self.count(
            ctx,
            body,
            messages_format.FORMAT,
            "count_tokens",
            estimate,
            (client_headers,),
        )

    def count(
        self: Gateway,
        ctx: RequestContext,
        body: dict[str, Any],
        fmt: str,
        endpoint: str,
        estimate: dict[str, Any],
        extra: tuple[Any, ...] = (),
    ) -> dict[str, Any]:
        """A token count: the adapter's `endpoint` where every deployment takes
        format `fmt` natively, else `estimate`.

        Counting generates nothing: only the key's requests-per-minute limit
        applies, and a failure does not count toward the breaker the
        generation endpoints share.
        """
        with self.finish.guard(ctx):
            self.resolve(ctx, body)
            limits = find(self.extensions, RateLimit)
            if limits is not None:
                limits.admit_request(ctx)
            if self.serves_natively(body["model"], fmt):
                result = self.route(ctx, endpoint, body, extra, breaker=False)
            else:
                result = estimate
        ctx.usage = dict(NO_USAGE)
        self.finish.succeeded(ctx, body, None)
        return result
