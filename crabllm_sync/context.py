"""RequestContext: what one request carries through the pipeline and extensions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from crabllm_sync.auth import Principal


@dataclass(slots=True)
class RequestContext:
    request_id: str
    # The value each view passes to Gateway.begin: chat | embeddings | models |
    # images | speech | transcription | translation | messages | count_tokens |
    # usage | budget | cache
    endpoint: str
    principal: Principal
    started: float  # monotonic seconds
    timestamp: float  # wall-clock seconds
    requested_model: str = ""
    model: str = ""  # after alias resolution
    stream: bool = False
    provider: str | None = None
    usage: dict[str, Any] | None = None
    status: int = 200
    cache_hit: bool = False
    no_cache: bool = False
    # Read timeout (seconds) the request asked for (x-crabllm-timeout), if any.
    timeout: float | None = None
    # Providers called, in order, one entry per attempt (retries and fallbacks).
    tried: list[str] = field(default_factory=list)
    first_byte: float | None = None  # monotonic: the upstream's answer (or first item)
    # Seconds spent waiting on upstream attempts and retry backoff (overhead.py).
    upstream_seconds: float = 0.0
    # Response headers extensions add (rate-limit counters and the like).
    headers: dict[str, str] = field(default_factory=dict)
    # Per-extension scratch space, keyed by extension name.
    state: dict[str, Any] = field(default_factory=dict)
