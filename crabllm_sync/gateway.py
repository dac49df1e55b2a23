"""The request pipeline, one method per endpoint.

on_request -> cache -> route (retries, fallback) -> on_response / on_chunk.
Knows no wire format beyond OpenAI's canonical dicts; views parse and render.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from crabllm_sync import providers
from crabllm_sync.auth import Authenticator, Principal, check_model
from crabllm_sync.config import Config
from crabllm_sync.context import RequestContext
from crabllm_sync.errors import GatewayError, UpstreamError
from crabllm_sync.extensions import Extension, build_extensions
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment, Registry, call_with_retries
from crabllm_sync.storage import Storage

log = logging.getLogger(__name__)


class Gateway:
    """Config, routing, extensions, storage and upstream sessions of one app."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        extensions: list[Extension] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.storage = storage
        self.registry = Registry(config, providers.base_urls())
        self.auth = Authenticator(config)
        self.extensions = (
            build_extensions(config, storage, clock=clock)
            if extensions is None
            else extensions
        )
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock
        self._sessions: dict[str, Any] = {}

    # -- plumbing shared by every endpoint ---------------------------------

    def session(self, dep: Deployment) -> Any:
        """One pooled transport per provider, made on first use.

        A requests.Session unless the adapter defines make_session(dep) (Bedrock
        builds a boto3 client there).
        """
        s = self._sessions.get(dep.provider)
        if s is None:
            make = getattr(providers.adapter_for(dep.kind), "make_session", None)
            s = make(dep) if make is not None else http.make_session()
            self._sessions[dep.provider] = s
        return s

    def begin(
        self,
        endpoint: str,
        headers: Mapping[str, str],
        *,
        allow_x_api_key: bool = False,
        request_id: str | None = None,
    ) -> RequestContext:
        """Authenticate and open the context of one request."""
        principal = self.auth.authenticate(headers, allow_x_api_key=allow_x_api_key)
        return self.context(endpoint, principal, request_id=request_id)

    def context(
        self, endpoint: str, principal: Principal, *, request_id: str | None = None
    ) -> RequestContext:
        return RequestContext(
            request_id=request_id or uuid.uuid4().hex,
            endpoint=endpoint,
            principal=principal,
            started=time.monotonic(),
            timestamp=self.clock(),
        )

    def prepare(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """Resolve the model, check the key may use it, run on_request hooks."""
        requested = body["model"]
        ctx.requested_model = requested
        ctx.model = self.registry.resolve(requested)
        check_model(ctx.principal, requested, ctx.model)
        for ext in self.extensions:
            ext.on_request(ctx, body)

    def _route(
        self,
        ctx: RequestContext,
        endpoint: str,
        body: dict[str, Any],
        call: Callable[[Any, Deployment, dict[str, Any]], Any] | None = None,
    ) -> Any:
        """Call `endpoint` on the model's deployments with retries and fallback."""
        deps = self.registry.candidates(ctx.model, self.rng)

        def attempt(dep: Deployment) -> Any:
            adapter = providers.adapter_for(dep.kind)
            fn = providers.require(adapter, endpoint, dep.provider)
            payload = {**body, "model": dep.model}
            if call is not None:
                return call(fn, dep, payload)
            return fn(dep, self.session(dep), payload)

        result, dep = call_with_retries(
            deps, attempt, rng=self.rng, sleep=self.sleep, model=ctx.model
        )
        ctx.provider = dep.provider
        return result

    def _fail(self, ctx: RequestContext, err: GatewayError) -> None:
        ctx.status = err.http_status
        for ext in self.extensions:
            ext.on_error(ctx, err)

    def _succeed(
        self, ctx: RequestContext, body: dict[str, Any], response: dict[str, Any] | None
    ) -> None:
        for ext in self.extensions:
            ext.on_response(ctx, body, response)

    # -- endpoints -----------------------------------------------------------

    def chat(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """A non-streamed chat completion."""
        return self._unary(ctx, "chat", body)

    def embeddings(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        return self._unary(ctx, "embeddings", body)

    def _unary(
        self, ctx: RequestContext, endpoint: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        try:
            self.prepare(ctx, body)
            for ext in self.extensions:
                cached = ext.on_cache_lookup(ctx, body)
                if cached is not None:
                    ctx.cache_hit = True
                    self._succeed(ctx, body, cached)
                    return cached
            response = self._route(ctx, endpoint, body)
            usage = response.get("usage") if isinstance(response, dict) else None
            ctx.usage = usage if isinstance(usage, dict) else None
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        self._succeed(ctx, body, response)
        return response

    def chat_stream(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Open a streamed chat: fails here (retries spent) or returns the chunks.

        The first chunk is read before this returns, so retry and fallback
        happen before the client sees a byte. Errors after that raise from the
        iterator, which the view turns into one final error event.
        """
        ctx.stream = True
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        # Always ask for usage so streams are counted; strip it below if unasked.
        upstream_body = {
            **body,
            "stream_options": {
                **(body.get("stream_options") or {}),
                "include_usage": True,
            },
        }

        def open_stream(fn: Any, dep: Deployment, payload: dict[str, Any]) -> Any:
            chunks = fn(dep, self.session(dep), payload)
            try:
                first = next(chunks)
            except StopIteration:
                raise UpstreamError(
                    f"{dep.provider}: stream ended before any data",
                    provider=dep.provider,
                    upstream_status=502,
                ) from None
            except BaseException:
                _close(chunks)
                raise
            return first, chunks

        try:
            self.prepare(ctx, body)
            first, chunks = self._route(ctx, "chat_stream", upstream_body, open_stream)
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        return self._relay(ctx, body, first, chunks, wants_usage)

    def _relay(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        first: dict[str, Any],
        chunks: Iterator[dict[str, Any]],
        wants_usage: bool,
    ) -> Iterator[dict[str, Any]]:
        finished = False
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                usage = chunk.get("usage")
                if usage:
                    ctx.usage = usage
                if usage and not chunk.get("choices") and not wants_usage:
                    pass  # our own usage request; the client did not ask for it
                else:
                    if not wants_usage and "usage" in chunk:
                        chunk = {k: v for k, v in chunk.items() if k != "usage"}
                    for ext in self.extensions:
                        ext.on_chunk(ctx, chunk)
                    yield chunk
                chunk = next(chunks, None)
            finished = True
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        finally:
            _close(chunks)
            if finished:
                self._succeed(ctx, body, None)
            elif ctx.status == 200:
                # The client went away (GeneratorExit) or a bug: still account.
                ctx.status = 499
                self._succeed(ctx, body, None)

    def list_models(self, principal: Principal) -> list[str]:
        from crabllm_sync.auth import allows

        return [
            m
            for m in self.registry.names()
            if allows(principal, m)
            or allows(principal, self.registry.aliases.get(m, m))
        ]

    def close(self) -> None:
        for ext in self.extensions:
            ext.close()
        for s in self._sessions.values():
            close = getattr(s, "close", None)
            if close is not None:
                close()
        self.storage.close()


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()
