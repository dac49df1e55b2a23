"""The one way a request ends, whatever ended it.

Success runs every extension's on_response; a failure runs every on_error.
A client that left (a stream cut short, or the server cancelling the
request) is a success with status 499: what was relayed is charged. Any
exception that is not a GatewayError is a bug: it is logged once with its
traceback and ends the request as an InternalError (a 500), so every
reservation, lease and probe taken at admission is given back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from crabllm_sync.errors import GatewayError, InternalError
from crabllm_sync.providers import http

if TYPE_CHECKING:
    from crabllm_sync.config import Config
    from crabllm_sync.context import RequestContext
    from crabllm_sync.extensions import Extension

log = logging.getLogger(__name__)

CLIENT_GONE = 499  # nginx's status for a client that closed the connection


def internal(exc: BaseException) -> GatewayError:
    """`exc` as a GatewayError; a bug's traceback is logged here, once."""
    if isinstance(exc, GatewayError):
        return exc
    log.error("internal error", exc_info=exc)
    err = InternalError()
    err.__cause__ = exc
    return err


class Finish:
    """Runs the extensions' closing hooks once per request."""

    def __init__(
        self, extensions: Sequence[Extension], redact: Callable[[str], str]
    ) -> None:
        self.extensions = extensions
        self.redact = redact

    def succeeded(
        self, ctx: RequestContext, body: dict[str, Any], response: Any
    ) -> None:
        for ext in self.extensions:
            _run(ext.name, "on_response", ext.on_response, ctx, body, response)

    def left(self, ctx: RequestContext, body: dict[str, Any]) -> None:
        """The client went away mid-answer: accounted as relayed, status 499."""
        ctx.status = CLIENT_GONE
        self.succeeded(ctx, body, None)

    def failed(self, ctx: RequestContext, exc: BaseException) -> BaseException:
        """Record `exc` as the request's end; returns what the caller raises."""
        err = internal(exc) if isinstance(exc, Exception) else InternalError()
        # A provider may repeat a credential in its error (a stream's error
        # event included): cut it before the client, the log or a hook sees it.
        message = self.redact(err.message)
        if message != err.message:
            err.message = message
            err.args = (message,)
        ctx.status = err.http_status if isinstance(exc, Exception) else CLIENT_GONE
        for ext in self.extensions:
            _run(ext.name, "on_error", ext.on_error, ctx, err)
        return err if isinstance(exc, Exception) else exc

    @contextmanager
    def guard(self, ctx: RequestContext) -> Iterator[None]:
        """Any exception in the block ends the request as a failure first."""
        try:
            yield
        except BaseException as exc:
            raised = self.failed(ctx, exc)
            if raised is exc:
                raise
            raise raised from exc


def _run(name: str, hook: str, fn: Callable[..., None], *args: Any) -> None:
    """One closing hook; its bug must not keep the next extension's hook
    (a refund, a release) from running."""
    try:
        fn(*args)
    except Exception:
        log.exception("extension %s: %s failed", name, hook)


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every secret in the config (provider credentials, admin and metrics
    tokens, keys)."""
    values = [config.admin_token or "", config.metrics_token or ""]
    for p in config.providers.values():
        values += [p.api_key, p.secret_key or "", p.access_key or ""]
    values += [k.key for k in config.keys]
    return tuple(v for v in values if len(v) >= http.MIN_SECRET)
