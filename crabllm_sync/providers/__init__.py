"""Provider adapters by config `kind`; an unknown kind is OpenAI-compatible.

An adapter is a module exposing BASE_URL, chat() and chat_stream(), and
optionally embeddings(), images(), speech() and transcription(). A missing
function means the provider cannot serve that endpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType

from crabllm_sync.errors import UnsupportedError

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
