"""Model discovery: an OpenAI-compatible provider (openai, ollama, any custom
kind) with no `models` serves what its upstream's GET {base_url}/models lists.

Read at start and every DISCOVERY_INTERVAL seconds, bounded (a timeout, at
most MAX_BYTES of answer, at most MAX_MODELS names). A failure is logged and
the last good list kept; a provider never listed serves nothing yet.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson
import requests

from crabllm_sync import providers
from crabllm_sync.config import Config, ProviderConfig

log = logging.getLogger(__name__)

DISCOVERY_INTERVAL = 300.0  # seconds between reads of each upstream's /models
TIMEOUT = 5.0  # seconds to connect and to read the answer
MAX_BYTES = 4 * 1024 * 1024
MAX_MODELS = 2000
MAX_NAME = 256
# Kinds whose /models names deployments differently (azure's are deployments).
NOT_DISCOVERED = frozenset({"azure"})

Fetch = Callable[[str, str, float], bytes]


class DiscoveryError(Exception):
    """An upstream /models that could not be read or understood."""


def fetch(url: str, api_key: str, timeout: float) -> bytes:
    """GET `url`, at most MAX_BYTES of it; DiscoveryError says why not."""
    headers = {"accept": "application/json"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    try:
        with requests.get(url, headers=headers, timeout=timeout, stream=True) as r:
            if r.status_code != 200:
                raise DiscoveryError(f"HTTP {r.status_code}")
            data = r.raw.read(MAX_BYTES + 1, decode_content=True)
    except requests.RequestException as exc:
        raise DiscoveryError(type(exc).__name__) from None
    if len(data) > MAX_BYTES:
        raise DiscoveryError(f"answer over {MAX_BYTES} bytes")
    return data


def parse(data: bytes) -> list[str]:
    """The model ids of an OpenAI /models answer, at most MAX_MODELS."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise DiscoveryError("answer is not JSON") from None
    items = body.get("data") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise DiscoveryError("answer has no 'data' list")
    names: list[str] = []
    for item in items:
        name = item.get("id") if isinstance(item, dict) else None
        if isinstance(name, str) and 0 < len(name) <= MAX_NAME and name not in names:
            names.append(name)
            if len(names) == MAX_MODELS:
                log.warning("model discovery: kept the first %d models", MAX_MODELS)
                break
    return names


def wants(p: ProviderConfig) -> bool:
    return (
        not p.models
        and p.kind not in NOT_DISCOVERED
        and providers.is_openai_compatible(p.kind)
    )


class Discovery:
    """The last good model list of each provider that has none configured."""

    def __init__(self, fetch: Fetch = fetch, timeout: float = TIMEOUT) -> None:
        self.fetch = fetch
        self.timeout = timeout
        # provider name -> (the (url, api_key) it was read from, the names)
        self.lists: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {}

    def discover(self, config: Config, *, only_new: bool = False) -> bool:
        """Read /models of every provider that wants it (`only_new`: those not
        yet read from their current URL and key); True if a list changed."""
        changed = False
        wanted = {n: p for n, p in config.providers.items() if wants(p)}
        for name in set(self.lists) - set(wanted):
            del self.lists[name]
        for name, p in wanted.items():
            source = (_url(p), p.api_key)
            known = self.lists.get(name)
            if only_new and known is not None and known[0] == source:
                continue
            try:
                names = tuple(parse(self.fetch(source[0], p.api_key, self.timeout)))
            except DiscoveryError as exc:
                kept = len(known[1]) if known else 0
                log.error(
                    "model discovery: %s %s failed (%s); keeping %d models",
                    name,
                    source[0],
                    exc,
                    kept,
                )
                continue
            if known is None or known[1] != names:
                log.info("model discovery: %s lists %d models", name, len(names))
                changed = True
            self.lists[name] = (source, names)
        return changed

    def fill(self, config: Config) -> Config:
        """`config` with each discovered provider's models filled in."""
        if not self.lists:
            return config
        filled: dict[str, ProviderConfig] = {}
        for name, p in config.providers.items():
            known = self.lists.get(name)
            if wants(p) and known is not None:
                p = p.model_copy(update={"models": list(known[1])})
            filled[name] = p
        return config.model_copy(update={"providers": filled})

    def needed(self, config: Config) -> bool:
        return any(wants(p) for p in config.providers.values())


def _url(p: ProviderConfig) -> str:
    base = p.base_url or providers.base_urls([p.kind]).get(p.kind) or ""
    return base.rstrip("/") + "/models"
