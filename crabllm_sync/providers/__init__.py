"""Provider adapters by config `kind`; an unknown kind is OpenAI-compatible.

An adapter is a module satisfying the Adapter protocol below: BASE_URL,
chat() and chat_stream(), and optionally one function per further endpoint
(embeddings, images, speech, transcription, messages, messages_stream,
count_tokens). A missing function means the provider cannot serve that
endpoint. NATIVE_FORMATS declares the client formats (formats/*.FORMAT) the
provider takes as they are, with no translation: anthropic declares
"messages", so /v1/messages passes through to it byte for byte.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from crabllm_sync.errors import UnsupportedError

if TYPE_CHECKING:
    from crabllm_sync.routing import Deployment


class Adapter(Protocol):
    """The interface every adapter module implements (checked structurally)."""

    BASE_URL: str | None

    def chat(self, dep: Deployment, session: Any, body: dict[str, Any]) -> Any: ...

    def chat_stream(
        self, dep: Deployment, session: Any, body: dict[str, Any]
    ) -> Iterator[Any]: ...


class SessionFactory(Protocol):
    """An adapter whose transport is not a requests.Session (Bedrock: boto3)."""

    def make_session(self, dep: Deployment) -> Any: ...


ADAPTERS: dict[str, str] = {
    "openai": "crabllm_sync.providers.openai",
    "ollama": "crabllm_sync.providers.ollama",
    "azure": "crabllm_sync.providers.azure",
    "anthropic": "crabllm_sync.providers.anthropic",
    "google": "crabllm_sync.providers.google",
    "bedrock": "crabllm_sync.providers.bedrock",
    "mock": "crabllm_sync.providers.mock",
}
_DEFAULT = "crabllm_sync.providers.openai"

# True for kinds that speak OpenAI's wire format upstream (pass-through).
OPENAI_COMPATIBLE = frozenset({"openai", "ollama", "azure"})


def adapter_for(kind: str) -> ModuleType:
    """The adapter module for a provider kind."""
    return importlib.import_module(ADAPTERS.get(kind, _DEFAULT))


def native_formats(kind: str) -> frozenset[str]:
    """The client formats a provider of `kind` takes as they are. A kind with
    no adapter of its own is an OpenAI-compatible server that may speak chat
    completions only: it takes none."""
    if kind not in ADAPTERS:
        return frozenset()
    return getattr(adapter_for(kind), "NATIVE_FORMATS", frozenset())


def make_session(dep: Deployment) -> Any:
    """The pooled transport of a deployment's provider: the adapter's own
    (SessionFactory) or a requests.Session."""
    adapter = adapter_for(dep.kind)
    if hasattr(adapter, "make_session"):
        factory: SessionFactory = adapter  # type: ignore[assignment]
        return factory.make_session(dep)
    from crabllm_sync.providers import http

    return http.make_session()


def close_session(session: Any) -> None:
    """Close a transport from make_session (None: nothing). A requests.Session
    or a boto3 client closes its pools: idle connections now, connections in
    use when their response is released, so requests in flight finish."""
    close = getattr(session, "close", None)
    if close is not None:
        close()


def is_openai_compatible(kind: str) -> bool:
    return kind in OPENAI_COMPATIBLE or kind not in ADAPTERS


def base_urls(kinds: Iterable[str] | None = None) -> dict[str, str | None]:
    """Default base_url per kind, read from each adapter's BASE_URL.

    Only the kinds named are imported: an unused adapter's SDK (boto3 for
    bedrock) would otherwise cost every worker its memory.
    """
    out: dict[str, str | None] = {}
    for kind in ADAPTERS if kinds is None else set(kinds) & set(ADAPTERS):
        try:
            out[kind] = getattr(adapter_for(kind), "BASE_URL", None)
        except ImportError:
            out[kind] = None
    return out


def require(adapter: ModuleType, endpoint: str, provider: str) -> object:
    """The adapter's function for `endpoint`, or a 400 naming the provider."""
    fn = getattr(adapter, endpoint, None)
    if fn is None:
        raise UnsupportedError(
            f"provider '{provider}' does not support the {endpoint} endpoint",
            code="unsupported_endpoint",
        )
    return fn
