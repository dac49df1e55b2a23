"""The route step: a request's payload to an adapter, on the model's
deployments with retries, fallback and the breaker (routing.py), each attempt
on its provider's pooled session.

Mixed into Gateway (gateway.py), whose registry, health, rng, sleep and
attempt_scope it reads; the lifecycle there calls `route` once per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crabllm_sync import providers, timeouts
from crabllm_sync.errors import UnsupportedError, UpstreamError
from crabllm_sync.pipeline.finish import internal
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment, call_with_retries
from crabllm_sync.streams import close_items

if TYPE_CHECKING:
    from crabllm_sync.context import RequestContext
    from crabllm_sync.gateway import Gateway
    from crabllm_sync.pipeline.relay import Observer

# ctx.state key: the one provider a request must go to (its state lives there).
PINNED_PROVIDER = "route.provider"

# opener(fn, dep, body): one attempt's call of the adapter's function `fn`.
Opener = Callable[[Any, Deployment, dict[str, Any]], Any]


class RouteStep:
    """Mixed into Gateway: the route step and the pooled sessions it sends on."""

    _sessions: dict[str, Any]

    def session(self: Gateway, dep: Deployment) -> Any:
        """One pooled transport per provider, made on first use."""
        s = self._sessions.get(dep.provider)
        if s is None:
            s = self._sessions[dep.provider] = providers.make_session(dep)
        return s

    def route(
        self: Gateway,
        ctx: RequestContext,
        endpoint: str,
        payload: dict[str, Any],
        extra: tuple[Any, ...] = (),
        *,
        opener: Opener | None = None,
        breaker: bool = True,
    ) -> Any:
        """Call the adapter's `endpoint(dep, session, payload, *extra)` on the
        model's deployments with retries, fallback and (unless `breaker` is
        False) the breaker. A non-streamed request gives up at request_deadline.

        A bug in an adapter ends the attempt as an InternalError: not retried,
        not a breaker failure, and its breaker probe is given back.
        """
        registry = self.registry  # one registry for the request's whole route
        deps = registry.candidates(registry.resolve(ctx.model), self.rng)
        deps = timeouts.with_timeout(deps, ctx.timeout)
        pinned = ctx.state.get(PINNED_PROVIDER)
        if pinned is not None:
            deps = [d for d in deps if d.provider == pinned]
            if not deps:
                raise UnsupportedError(
                    f"the conversation is stored by provider '{pinned}', which "
                    f"does not serve model '{ctx.requested_model}'",
                    param="previous_response_id",
                )
        deadline = None
        if not ctx.stream:
            routing = self.config.routing
            deadline = ctx.started + timeouts.deadline_seconds(routing, ctx.timeout)

        def attempt(dep: Deployment) -> Any:
            adapter = providers.adapter_for(dep.kind)
            fn = providers.require(adapter, endpoint, dep.provider)
            body = {**payload, "model": dep.model}
            ctx.tried.append(dep.provider)
            started = time.monotonic()
            try:
                with self.attempt_scope(ctx, dep):
                    if opener is not None:
                        return opener(fn, dep, body)
                    return fn(dep, self.session(dep), body, *extra)  # type: ignore[operator]
            except Exception as exc:
                raise internal(exc) from exc
            finally:
                ctx.upstream_seconds += time.monotonic() - started

        def backoff(seconds: float) -> None:
            started = time.monotonic()
            try:
                self.sleep(seconds)
            finally:
                ctx.upstream_seconds += time.monotonic() - started

        result, dep = call_with_retries(
            deps,
            attempt,
            rng=self.rng,
            sleep=backoff,
            model=ctx.model,
            health=self.health if breaker else None,
            deadline=deadline,
        )
        ctx.provider = dep.provider
        ctx.first_byte = time.monotonic()
        return result

    def stream_opener(
        self: Gateway, observer: Observer, extra: tuple[Any, ...] = ()
    ) -> Opener:
        """An attempt that opens a stream and reads its first item, so retries
        and fallback happen before the client sees a byte: (first item, the
        rest, the request's own ScopedSession, which can abort the read)."""

        def open_stream(fn: Any, dep: Deployment, body: dict[str, Any]) -> Any:
            session = http.scoped(self.session(dep))
            items = fn(dep, session, body, *extra)
            try:
                first = next(items)
                observer.first(first, dep.provider)
            except StopIteration:
                raise UpstreamError(
                    f"{dep.provider}: stream ended before any data",
                    provider=dep.provider,
                    upstream_status=502,
                ) from None
            except BaseException:
                close_items(items)
                raise
            return first, items, session

        return open_stream
