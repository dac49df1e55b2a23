"""The most a request may use, known before it is sent (pure).

Budgets reserve this usage priced, and TPM reserves its tokens, so a burst of
requests is limited while it is in flight, not only once answers come back.
Output is the request's own cap (max_completion_tokens / max_tokens) times `n`;
without a cap, the model's known output maximum, else a configured default.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crabllm_sync import pricing
from crabllm_sync.config import BudgetExtension, Config
from crabllm_sync.pricing import Usage

# Output tokens a model can answer when the request sets no limit (provider
# documentation). Claude: the Anthropic adapter sends max_tokens 4096 when the
# client sets none. Keys match a model id or its prefix, as prices do.
MAX_OUTPUT_TOKENS: dict[str, int] = {
    "gpt-5": 128_000,
    "gpt-4.1": 32_768,
    "gpt-4o": 16_384,
    "gpt-4-turbo": 4_096,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 4_096,
    "o1": 100_000,
    "o1-mini": 65_536,
    "o3": 100_000,
    "o3-mini": 100_000,
    "o4-mini": 100_000,
    "claude": 4_096,
    "anthropic.claude": 4_096,
    "gemini-2.5-pro": 65_536,
    "gemini-2.5-flash": 65_536,
    "gemini-2.0-flash": 8_192,
    "gemini-1.5-pro": 8_192,
    "gemini-1.5-flash": 8_192,
}

# OpenAI's own bound on `n`; keeps a reservation within a 64-bit counter.
MAX_CHOICES = 128
# Endpoints that generate nothing billable (counting tokens).
FREE_ENDPOINTS = frozenset({"count_tokens"})


def max_output_tokens(model: str, config: Config) -> int:
    """Output tokens `model` may answer: [pricing.MODEL], the table, the default."""
    own = config.pricing.get(model)
    if own is not None and own.max_output_tokens:
        return own.max_output_tokens
    known = pricing.match(model, MAX_OUTPUT_TOKENS)
    if known is not None:
        return known
    section = config.extensions.budget or BudgetExtension()
    return section.default_max_output_tokens


def choices(body: Mapping[str, Any]) -> int:
    """How many answers the request asks for (`n`, 1 to MAX_CHOICES)."""
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        return min(n, MAX_CHOICES)
    return 1


def output_limit(body: Mapping[str, Any]) -> int | None:
    """The request's own cap on output tokens per answer, if it set one."""
    for name in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def requested_usage(body: Mapping[str, Any], endpoint: str, max_output: int) -> Usage:
    """The usage to reserve for a request to `endpoint` (marked estimated).

    Media: images count `n`, speech its input characters; a transcription's
    duration is unknown until the provider answers, so it reserves nothing.
    """
    if endpoint in FREE_ENDPOINTS or endpoint in ("transcription", "translation"):
        return Usage(estimated=True)
    if endpoint == "images":
        return Usage(images=choices(body), estimated=True)
    if endpoint == "speech":
        text = body.get("input")
        return Usage(characters=len(text) if isinstance(text, str) else 0)
    prompt = pricing.estimate_tokens(pricing.request_chars(body))
    if endpoint == "embeddings":
        return Usage(input=prompt, estimated=True)
    per_answer = output_limit(body) or max_output
    return Usage(input=prompt, output=choices(body) * per_answer, estimated=True)
