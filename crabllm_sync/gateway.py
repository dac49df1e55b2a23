"""The request pipeline: one lifecycle for every endpoint and format.

authenticate (begin) -> parse and validate (views) -> prepare (resolve, model
check, on_request) -> cache lookup -> route (retries, fallback, breaker) ->
relay (streams) -> finish (pipeline/finish.py). `unary` and `stream` are the
two shapes of that lifecycle; the route step and the pooled sessions are
pipeline/route.py's (mixed in). Each endpoint below only names its adapter
function, its usage and its format's observer (the native formats' ones are
in gateway_native.py). Knows no wire format beyond OpenAI's canonical
dicts; views parse and render (formats/ translate).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from crabllm_sync import providers, timeouts
from crabllm_sync.auth import Authenticator, Principal, check_model
from crabllm_sync.catalog.live import Catalog
from crabllm_sync.config import Config
from crabllm_sync.context import RequestContext
from crabllm_sync.db import open_database
from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.extensions import Extension, build_extensions
from crabllm_sync.formats import chat as chat_format
from crabllm_sync.gateway_native import NativeEndpoints
from crabllm_sync.health import Health
from crabllm_sync.keys.store import KeyStore
from crabllm_sync.pipeline import Finish, Observer, PassThrough, relay
from crabllm_sync.pipeline.finish import config_secrets
from crabllm_sync.pipeline.route import RouteStep
from crabllm_sync.providers import http
from crabllm_sync.routing import Deployment, Registry
from crabllm_sync.storage import Storage
from crabllm_sync.streams import Relay
from crabllm_sync.wire import openai as wire_openai

log = logging.getLogger(__name__)


class Gateway(RouteStep, NativeEndpoints):
    """Config, routing, extensions, storage and upstream sessions of one app."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        *,
        config_file: str = "the config file",
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
            build_extensions(
                config, storage, db=self.db, clock=clock, redact=self.redact
            )
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
        # Called with each new RequestContext (overhead.py, tracing).
        self.on_begin: list[Callable[[RequestContext], None]] = []
        # Wraps each upstream attempt (tracing's child span).
        self.attempt_scope: Callable[
            [RequestContext, Deployment], AbstractContextManager[None]
        ] = _no_scope
        # Providers added at run time (SQL store), served next to the file's.
        self.catalog = Catalog(
            config, self.db, self.use_providers, config_file=config_file
        )
        self.catalog.start()
        self.on_begin.append(lambda ctx: self.catalog.ensure_polling())
        # Called by close() first, while storage and the database are open.
        self.on_close: list[Callable[[], None]] = []

    def use_providers(self, config: Config) -> None:
        """Serve `config` (the file's config with the run-time providers, as
        the catalog checked it) from now on. The registry is built first and
        swapped in one assignment: a request sees the old one or the new one."""
        kinds = {p.kind for p in config.providers.values()}
        registry = Registry(config, providers.base_urls(kinds))
        old = self.config.providers
        changed = {
            name
            for name in set(old) | set(config.providers)
            if old.get(name) != config.providers.get(name)
        }
        self.config = config
        self._secrets = config_secrets(config)
        self.health.deployments = [d for ds in registry.models.values() for d in ds]
        self.registry = registry
        # A changed or removed provider's transport (its credentials, its
        # pool) is made anew on next use, and the old one closed now: its idle
        # connections at once; the ones requests in flight hold (a stream)
        # when they are released (urllib3 closes what returns to a closed
        # pool), so those requests run to their end.
        for name in changed:
            providers.close_session(self._sessions.pop(name, None))

    @property
    def finish(self) -> Finish:
        # Built on use: tests swap self.extensions after construction.
        return Finish(self.extensions, self.redact)

    def redact(self, text: str) -> str:
        return http.redact(text, self._secrets)

    # -- the steps -------------------------------------------------------------

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
        for hook in self.on_begin:
            hook(ctx)
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

    def resolve(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """The requested model, its alias resolved; may this key use it?"""
        requested = body["model"]
        ctx.requested_model = requested
        ctx.model = self.registry.resolve(requested)
        check_model(ctx.principal, requested, ctx.model)

    def prepare(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """Resolve the model, check the key may use it, run on_request hooks."""
        self.resolve(ctx, body)
        for ext in self.extensions:
            ext.on_request(ctx, body)

    def cached(self, ctx: RequestContext, body: dict[str, Any]) -> Any:
        """A stored answer from the first extension that has one, or None."""
        for ext in self.extensions:
            answer = ext.on_cache_lookup(ctx, body)
            if answer is not None:
                ctx.cache_hit = True
                return answer
        return None

    # -- the two shapes of a request ---------------------------------------------

    def unary(
        self,
        ctx: RequestContext,
        endpoint: str,
        body: dict[str, Any],
        extra: tuple[Any, ...] = (),
        *,
        usage_of: Callable[[Any], dict[str, Any] | None],
        cacheable: bool = False,
        render: Callable[[Any], Any] | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Any:
        """prepare -> cache (when `cacheable`) -> route -> finish; the answer
        as `render` makes it, inside the lifecycle (its failure is a 500).
        `payload`: what is routed when it is not `body` (a native request,
        with `body` its canonical outline for the hooks)."""
        with self.finish.guard(ctx):
            self.prepare(ctx, body)
            result = self.cached(ctx, body) if cacheable else None
            if result is None:
                routed = body if payload is None else payload
                result = self.route(ctx, endpoint, routed, extra)
                ctx.usage = usage_of(result)
            answer = result if render is None else render(result)
        # Hooks see the canonical answer when it can be stored (cache, usage).
        self.finish.succeeded(ctx, body, result if cacheable else None)
        return answer

    def stream(
        self,
        ctx: RequestContext,
        endpoint: str,
        body: dict[str, Any],
        payload: dict[str, Any],
        observer: Observer,
        extra: tuple[Any, ...] = (),
    ) -> Relay[Any]:
        """prepare -> route to the first item -> the relay (finish at its end).

        The first item is read while routing, so retry and fallback happen
        before the client sees a byte. Errors after that raise from the
        iterator, which the view turns into one final error event. The Relay's
        abort() cuts the upstream from another thread (streams.paced).
        """
        ctx.stream = True

        with self.finish.guard(ctx):
            self.prepare(ctx, body)
            opener = self.stream_opener(observer, extra)
            first, items, session = self.route(ctx, endpoint, payload, opener=opener)
        out: Relay[Any] = Relay(iter(()), getattr(session, "abort", _nothing))
        out.items = relay(
            ctx,
            body,
            (first,),
            items,
            observer,
            self.finish,
            self.extensions,
            is_aborted=lambda: out.is_aborted,
        )
        return out

    # -- endpoints ---------------------------------------------------------------

    def chat(
        self,
        ctx: RequestContext,
        body: dict[str, Any],
        render: Callable[[Any], Any] | None = None,
    ) -> Any:
        """A non-streamed chat completion (cached), as `render` makes it."""
        usage = chat_format.answer_usage
        return self.unary(
            ctx, "chat", body, usage_of=usage, cacheable=True, render=render
        )

    def embeddings(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        usage = chat_format.answer_usage
        return self.unary(ctx, "embeddings", body, usage_of=usage, cacheable=True)

    def chat_stream(self, ctx: RequestContext, body: dict[str, Any]) -> Relay[Any]:
        """Open a streamed chat: fails here (retries spent) or returns the chunks."""
        payload, wants_usage = chat_format.stream_request(body)
        observer = chat_format.ChatObserver(ctx, wants_usage)
        return self.stream(ctx, "chat_stream", body, payload, observer)

    def images(self, ctx: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """Image generation; usage is {"images": n} (plus tokens when reported)."""
        return self.unary(ctx, "images", body, usage_of=wire_openai.image_usage)

    def speech(
        self, ctx: RequestContext, body: dict[str, Any]
    ) -> tuple[str, Iterator[bytes]]:
        """Text to speech: (content type, audio bytes as they arrive upstream)."""
        ctx.stream = True
        with self.finish.guard(ctx):
            self.prepare(ctx, body)
            content_type, chunks = self.route(ctx, "speech", body)
        ctx.usage = {"characters": len(body.get("input") or "")}
        audio = relay(
            ctx, body, (), chunks, PassThrough(), self.finish, self.extensions
        )
        return content_type, audio

    def transcription(
        self, ctx: RequestContext, endpoint: str, body: dict[str, Any], upload: Any
    ) -> tuple[str, bytes]:
        """Transcription or translation (`endpoint`) of an uploaded audio file.

        `body` holds the form fields; `upload` (multipart.Upload) is rewound and
        streamed again on each attempt. Usage is {"seconds": x} or tokens.
        """
        return self.unary(ctx, endpoint, body, (upload,), usage_of=_audio_usage)

    def list_models(self, principal: Principal) -> list[str]:
        from crabllm_sync.auth import allows

        return [
            m
            for m in self.registry.names()
            if allows(principal, m)
            or allows(principal, self.registry.aliases.get(m, m))
        ]

    def close(self) -> None:
        for hook in self.on_close:
            hook()
        self.catalog.close()
        for ext in self.extensions:
            ext.close()
        for s in self._sessions.values():
            providers.close_session(s)
        self.storage.close()
        if self.db is not None:
            self.db.close()


def _audio_usage(result: tuple[str, bytes]) -> dict[str, Any] | None:
    return wire_openai.audio_usage(*result)


def _nothing() -> None:
    pass


def _no_scope(ctx: RequestContext, dep: Deployment) -> AbstractContextManager[None]:
    return nullcontext()
