"""The request pipeline, one method per endpoint.

on_request -> cache -> route (retries, fallback) -> on_response / on_chunk.
Knows no wire format beyond OpenAI's canonical dicts; views parse and render.
"""

from __future__ import annotations

import functools
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from crabllm_sync import providers, sse, timeouts
from crabllm_sync.auth import Authenticator, Principal, check_model
from crabllm_sync.config import Config
from crabllm_sync.context import RequestContext
from crabllm_sync.db import open_database
from crabllm_sync.errors import (
    GatewayError,
    ServiceUnavailableError,
    UnsupportedError,
    UpstreamError,
)
from crabllm_sync.extensions import Extension, build_extensions
from crabllm_sync.health import Health
from crabllm_sync.keystore import KeyStore
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment, Registry, call_with_retries
from crabllm_sync.storage import Storage
from crabllm_sync.streams import Relay
from crabllm_sync.wire import anthropic as wire_anthropic
from crabllm_sync.wire import openai as wire_openai

log = logging.getLogger(__name__)

Headers = Mapping[str, str]


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
        self._secrets = config_secrets(config)
        self.storage = storage
        kinds = {p.kind for p in config.providers.values()}
        self.registry = Registry(config, providers.base_urls(kinds))
        # Keys (and usage records) in SQL; None for `memory` storage.
        self.db = open_database(config)
        self.keys = KeyStore(self.db, clock=clock)
        try:
            self.keys.start(config.keys)
        except ServiceUnavailableError as exc:
            log.error("keys not loaded yet, retried on use: %s", exc)
        self.auth = Authenticator(config, self.keys)
        self.extensions = (
            build_extensions(config, storage, db=self.db, clock=clock)
            if extensions is None
            else extensions
        )
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock
        self.health = Health(
            storage,
            config.routing,
            deployments=[d for deps in self.registry.models.values() for d in deps],
            clock=clock,
        )
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
        ctx = self.context(endpoint, principal, request_id=request_id)
        ctx.timeout = timeouts.requested_timeout(headers, self.config.routing)
        return ctx

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
        """Call `endpoint` on the model's deployments with retries and fallback.

        A non-streamed request gives up at `[routing] request_deadline`.
        """
        deps = self.registry.candidates(ctx.model, self.rng)
        deps = timeouts.with_timeout(deps, ctx.timeout)
        deadline = None
        if not ctx.stream:
            routing = self.config.routing
            deadline = ctx.started + timeouts.deadline_seconds(routing, ctx.timeout)

        def attempt(dep: Deployment) -> Any:
            adapter = providers.adapter_for(dep.kind)
            fn = providers.require(adapter, endpoint, dep.provider)
            payload = {**body, "model": dep.model}
            if call is not None:
                return call(fn, dep, payload)
            return fn(dep, self.session(dep), payload)

        result, dep = call_with_retries(
            deps,
            attempt,
            rng=self.rng,
            sleep=self.sleep,
            model=ctx.model,
            health=self.health,
            deadline=deadline,
        )
        ctx.provider = dep.provider
        return result

    def _end_stream(
        self, ctx: RequestContext, body: dict[str, Any], finished: bool
    ) -> None:
        """After a relayed stream: a success, or (no error recorded yet) the
        client went away (GeneratorExit) or a bug: still accounted, as 499."""
        if finished:
            self._succeed(ctx, body, None)
        elif ctx.status == 200:
            ctx.status = 499
            self._succeed(ctx, body, None)

    def _fail(self, ctx: RequestContext, err: GatewayError) -> None:
        # A provider may repeat a credential in its error (a stream's error
        # event included): cut it before the client, the log or a hook sees it.
        message = http.redact(err.message, self._secrets)
        if message != err.message:
            err.message = message
            err.args = (message,)
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

    def chat_stream(self, ctx: RequestContext, body: dict[str, Any]) -> Relay[Any]:
        """Open a streamed chat: fails here (retries spent) or returns the chunks.

        The first chunk is read before this returns, so retry and fallback
        happen before the client sees a byte. Errors after that raise from the
        iterator, which the view turns into one final error event. The Relay's
        abort() cuts the upstream from another thread (streams.paced).
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
            session = http.scoped(self.session(dep))
            chunks = fn(dep, session, payload)
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
            return first, chunks, session

        relay_of = functools.partial(self._relay, ctx, body, wants_usage=wants_usage)
        return self._open_relay(
            ctx, body, "chat_stream", upstream_body, open_stream, relay_of
        )

    def _open_relay(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        endpoint: str,
        payload: dict[str, Any],
        open_stream: Callable[..., Any],
        relay_of: Callable[..., Iterator[Any]],
    ) -> Relay[Any]:
        """Route to a stream's first item (retries and fallback happen here),
        then relay the rest as relay_of(first, rest, is_aborted=...); the
        Relay's abort() cuts the upstream."""
        try:
            self.prepare(ctx, body)
            first, items, session = self._route(ctx, endpoint, payload, open_stream)
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        abort = getattr(session, "abort", _nothing)
        relay: Relay[Any] = Relay(
            relay_of(first, items, is_aborted=lambda: relay.is_aborted), abort
        )
        return relay

    def _relay(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        first: dict[str, Any],
        chunks: Iterator[dict[str, Any]],
        wants_usage: bool,
        is_aborted: Callable[[], bool] = lambda: False,
    ) -> Iterator[dict[str, Any]]:
        """Pass chunks on; an upstream that ends before every choice finished
        (no finish_reason) is an error, never a quiet success."""
        finished = False
        started: set[Any] = set()
        ended: set[Any] = set()
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                for choice in chunk.get("choices") or ():
                    index = choice.get("index", 0)
                    started.add(index)
                    if choice.get("finish_reason"):
                        ended.add(index)
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
            if not ended or started - ended:
                raise UpstreamError(
                    f"{ctx.provider}: the stream ended before the model finished",
                    provider=ctx.provider,
                    upstream_status=502,
                )
            finished = True
        except GatewayError as err:
            if not is_aborted():  # else we cut it: the client left (499 below)
                self._fail(ctx, err)
            raise
        finally:
            _close(chunks)
            self._end_stream(ctx, body, finished)

    # -- Anthropic-native, images, audio -------------------------------------

    def serves_natively(self, requested: Any, kind: str) -> bool:
        """Whether every deployment of the requested model is of provider `kind`."""
        if not isinstance(requested, str):
            return False
        deps = self.registry.models.get(self.registry.aliases.get(requested, requested))
        return bool(deps) and all(d.kind == kind for d in deps)

    def messages_native(
        self, ctx: RequestContext, body: dict[str, Any], client_headers: Headers
    ) -> dict[str, Any]:
        """An Anthropic Messages call passed through to anthropic-kind deployments."""

        def call(fn: Any, dep: Deployment, payload: dict[str, Any]) -> Any:
            return fn(dep, self.session(dep), payload, client_headers)

        return self._once(ctx, "messages", body, call, wire_anthropic.message_usage)

    def messages_native_stream(
        self, ctx: RequestContext, body: dict[str, Any], client_headers: Headers
    ) -> Relay[sse.Event]:
        """Open a native Anthropic stream (first event read before returning).

        As with chat_stream, the Relay's abort() cuts the upstream from another
        thread (streams.paced).
        """
        ctx.stream = True

        def open_stream(fn: Any, dep: Deployment, payload: dict[str, Any]) -> Any:
            session = http.scoped(self.session(dep))
            events = fn(dep, session, payload, client_headers)
            first = _first(events, dep.provider)
            if first.event == "error":
                _close(events)
                raise wire_anthropic.event_error(first.data, dep.provider)
            return first, events, session

        relay_of = functools.partial(self._relay_native, ctx, body)
        return self._open_relay(
            ctx, body, "messages_stream", body, open_stream, relay_of
        )

    def _relay_native(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        first: sse.Event,
        events: Iterator[sse.Event],
        is_aborted: Callable[[], bool] = lambda: False,
    ) -> Iterator[sse.Event]:
        usage: dict[str, Any] = {}
        finished = False
        try:
            event: sse.Event | None = first
            while event is not None:
                if event.event in ("message_start", "message_delta"):
                    usage.update(wire_anthropic.event_usage(event.data))
                    ctx.usage = wire_anthropic.usage_to_openai(usage)
                if event.event == "error":  # cut secrets a provider repeats
                    event = sse.Event(http.redact(event.data, self._secrets), "error")
                yield event
                if event.event == "error":
                    # Passed on verbatim (Anthropic's own type); the stream ends.
                    err = wire_anthropic.event_error(event.data, ctx.provider or "?")
                    self._fail(ctx, err)
                    return
                event = next(events, None)
            finished = True
        except GatewayError as err:
            if not is_aborted():  # else we cut it: the client left (499 below)
                self._fail(ctx, err)
            raise
        finally:
            _close(events)
            self._end_stream(ctx, body, finished)

    def count_tokens(
        self, ctx: RequestContext, body: dict[str, Any], client_headers: Headers
    ) -> dict[str, Any]:
        """Anthropic's count_tokens; only anthropic-kind deployments can answer it.

        Counting generates nothing, so no extension hooks run and no usage is kept.
        """

        def call(fn: Any, dep: Deployment, payload: dict[str, Any]) -> Any:
            return fn(dep, self.session(dep), payload, client_headers)

        try:
            ctx.requested_model = body["model"]
            ctx.model = self.registry.resolve(body["model"])
            check_model(ctx.principal, body["model"], ctx.model)
            for dep in self.registry.models[ctx.model]:
                # Other adapters' count_tokens (the mock's) are not this endpoint.
                if dep.kind != "anthropic":
                    raise UnsupportedError(
                        f"provider '{dep.provider}' does not support the "
                        "count_tokens endpoint",
                        code="unsupported_endpoint",
                    )
            result = self._route(ctx, "count_tokens", body, call)
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        # Counting tokens is free: no usage to charge, but still one logged request.
        ctx.usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        self._succeed(ctx, body, None)
        return result

    def images(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """Image generation; usage is {"images": n} (plus tokens when reported)."""
        return self._once(ctx, "images", body, None, wire_openai.image_usage)

    def speech(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> tuple[str, Iterator[bytes]]:
        """Text to speech: (content type, audio bytes as they arrive upstream)."""
        ctx.stream = True
        try:
            self.prepare(ctx, body)
            content_type, chunks = self._route(ctx, "speech", body)
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        ctx.usage = {"characters": len(body.get("input") or "")}
        return content_type, self._relay_bytes(ctx, body, chunks)

    def _relay_bytes(
        self, ctx: RequestContext, body: dict[str, Any], chunks: Iterator[bytes]
    ) -> Iterator[bytes]:
        finished = False
        try:
            yield from chunks
            finished = True
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        finally:
            _close(chunks)
            self._end_stream(ctx, body, finished)

    def transcription(
        self, ctx: RequestContext, endpoint: str, body: dict[str, Any], upload: Any
    ) -> tuple[str, bytes]:
        """Transcription or translation (`endpoint`) of an uploaded audio file.

        `body` holds the form fields; `upload` (multipart.Upload) is rewound and
        streamed again on each attempt. Usage is {"seconds": x} or tokens.
        """

        def call(fn: Any, dep: Deployment, payload: dict[str, Any]) -> Any:
            return fn(dep, self.session(dep), payload, upload)

        return self._once(
            ctx, endpoint, body, call, lambda r: wire_openai.audio_usage(*r)
        )

    def _once(
        self,
        ctx: RequestContext,
        endpoint: str,
        body: dict[str, Any],
        call: Callable[[Any, Deployment, dict[str, Any]], Any] | None,
        usage_of: Callable[[Any], dict[str, Any] | None],
    ) -> Any:
        """One uncached call: prepare, route, record usage, run the hooks."""
        try:
            self.prepare(ctx, body)
            result = self._route(ctx, endpoint, body, call)
            ctx.usage = usage_of(result)
        except GatewayError as err:
            self._fail(ctx, err)
            raise
        self._succeed(ctx, body, None)
        return result

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
        if self.db is not None:
            self.db.close()


def _nothing() -> None:
    pass


def _first(events: Iterator[Any], provider: str) -> Any:
    """The first item of an upstream stream; an empty stream is a 502."""
    try:
        return next(events)
    except StopIteration:
        raise UpstreamError(
            f"{provider}: stream ended before any data",
            provider=provider,
            upstream_status=502,
        ) from None
    except BaseException:
        _close(events)
        raise


def _close(it: Any) -> None:
    close = getattr(it, "close", None)
    if close is not None:
        close()


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every secret in the config (provider credentials, admin token, keys)."""
    values = [config.admin_token or ""]
    for p in config.providers.values():
        values += [p.api_key, p.secret_key or "", p.access_key or ""]
    values += [k.key for k in config.keys]
    return tuple(v for v in values if len(v) >= http.MIN_SECRET)
