"""Costs: normalised usage, a model's price (price_table.py), cost in nanos.

Pure: data in, data out. Money is integer nanodollars (USD x 1e9), so the sum
of per-request costs is exact wherever it is added up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from crabllm_sync.config import Config, PricingConfig

# The tables live in price_table.py; callers use them through this module.
from crabllm_sync.price_table import BUILTIN, FREE_KINDS, ZERO_PRICE, Price

NANOS_PER_USD = 1_000_000_000
T = TypeVar("T")
CHARS_PER_TOKEN = 4  # the usual rule of thumb when an upstream reports no usage


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one request, each counted once.

    `input` is uncached input only; cache reads and writes are apart. `output`
    includes reasoning tokens (priced as output); `reasoning` says how many.
    """

    input: int = 0
    cache_read: int = 0
    cache_write: int = 0
    output: int = 0
    reasoning: int = 0
    estimated: bool = False
    # Units of the media endpoints (priced apart from tokens).
    images: int = 0  # images generated
    characters: int = 0  # characters of speech input
    audio_ms: int = 0  # milliseconds of transcribed / translated audio

    @property
    def prompt_tokens(self) -> int:
        """All input, as OpenAI's prompt_tokens counts it."""
        return self.input + self.cache_read + self.cache_write

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.output


_BEDROCK_REGION_PREFIXES = ("us.", "eu.", "apac.", "us-gov.", "global.", "jp.", "au.")
# Not ".": gpt-4.5 is not a gpt-4 (ids differ in versions after a dot).
_BOUNDARIES = ("-", ":", "@", "/")


def price_from_config(p: PricingConfig) -> Price:
    return Price(
        input=p.prompt_cost_per_million,
        output=p.completion_cost_per_million,
        cache_read=p.cache_read_cost_per_million,
        cache_write=p.cache_write_cost_per_million,
        per_image=p.cost_per_image or 0.0,
        per_million_characters=p.cost_per_million_characters or 0.0,
        per_second=p.cost_per_second or 0.0,
    )


def lookup(
    model: str,
    overrides: Mapping[str, PricingConfig] | None = None,
    table: Mapping[str, Price] = BUILTIN,
) -> Price:
    """The price of `model`: [pricing.MODEL], else the built-in table, else zero."""
    found = find(model, overrides, table)
    return ZERO_PRICE if found is None else found


def find(
    model: str,
    overrides: Mapping[str, PricingConfig] | None = None,
    table: Mapping[str, Price] = BUILTIN,
) -> Price | None:
    """The price of `model`, or None when neither config nor the table has one.

    A model priced at zero on purpose (`[pricing.MODEL]` with no costs, or a
    free model in the table) is priced; only an unknown model is None.
    """
    if overrides and model in overrides:
        return price_from_config(overrides[model])
    return match(model, table)


def is_priced(model: str, config: Config) -> bool:
    """Whether `model` has a price, or is served only by providers that bill nothing."""
    if find(model, config.pricing) is not None:
        return True
    kinds = {p.kind for p in config.providers.values() if model in p.models}
    return bool(kinds) and kinds <= FREE_KINDS


def unpriced_models(config: Config) -> list[str]:
    """Models the config serves with no price: their requests cost $0."""
    served = {
        m
        for p in config.providers.values()
        if p.kind not in FREE_KINDS
        for m in p.models
        if "*" not in m
    }
    return sorted(m for m in served if find(m, config.pricing) is None)


def match(model: str, table: Mapping[str, T]) -> T | None:
    """The entry of `table` for `model`: the exact id, else the longest key that
    is a prefix of the id at a boundary (`gpt-4o-2024-08-06` -> `gpt-4o`),
    ignoring a Bedrock cross-region prefix (`us.anthropic...`)."""
    name = model
    for prefix in _BEDROCK_REGION_PREFIXES:
        if name.startswith(prefix) and "." in name[len(prefix) :]:
            name = name[len(prefix) :]
            break
    if name in table:
        return table[name]
    best = ""
    for key in table:
        if (
            len(key) > len(best)
            and name.startswith(key)
            and name[len(key)] in _BOUNDARIES
        ):
            best = key
    return table[best] if best else None


def rate(per_million_usd: float) -> int:
    """Nanodollars per million tokens (exact for prices with up to 9 decimals)."""
    return round(per_million_usd * NANOS_PER_USD)


def cost(usage: Usage, price: Price) -> int:
    """Cost of `usage` in nanodollars; each token (and media unit) priced once.

    Integer arithmetic in millionths of a nano, rounded once at the end.
    """
    read = price.input if price.cache_read is None else price.cache_read
    write = price.input if price.cache_write is None else price.cache_write
    total = (
        usage.input * rate(price.input)
        + usage.cache_read * rate(read)
        + usage.cache_write * rate(write)
        + usage.output * rate(price.output)
        # rate(x) is nanos per million units; per image and per second are
        # per one unit (nanos x 1e6), and a millisecond is 1e-3 s (x 1e3).
        + usage.images * rate(price.per_image) * 1_000_000
        + usage.characters * rate(price.per_million_characters)
        + usage.audio_ms * rate(price.per_second) * 1_000
    )
    return (total + 500_000) // 1_000_000  # round half up to a whole nano


def _int(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


MEDIA_KEYS = ("images", "characters", "seconds")


def normalise(raw: Mapping[str, Any] | None) -> Usage | None:
    """Usage as an upstream reported it -> Usage; None when it reported nothing.

    OpenAI shape: prompt_tokens includes cached reads
    (prompt_tokens_details.cached_tokens) and, from the Anthropic adapter,
    cache writes (cache_creation_input_tokens); both are taken out of `input`.
    Anthropic's native shape (input_tokens excludes the cache) is read too.
    The media endpoints' {"images": n}, {"characters": n}, {"seconds": x}
    (wire/openai.py, gateway.speech) count alongside any tokens reported.
    """
    if not isinstance(raw, Mapping):
        return None
    tokens = _tokens(raw)
    if not any(k in raw for k in MEDIA_KEYS):
        return tokens
    return replace(
        tokens or Usage(),
        images=_int(raw.get("images")),
        characters=_int(raw.get("characters")),
        audio_ms=_millis(raw.get("seconds")),
    )


def _millis(seconds: Any) -> int:
    """Whole milliseconds of a duration in seconds (0 when not a number >= 0)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return 0
    if not math.isfinite(seconds) or seconds <= 0:
        return 0
    return round(seconds * 1000)


def _tokens(raw: Mapping[str, Any]) -> Usage | None:
    if "prompt_tokens" in raw or "completion_tokens" in raw:
        details = raw.get("prompt_tokens_details")
        details = details if isinstance(details, Mapping) else {}
        out_details = raw.get("completion_tokens_details")
        out_details = out_details if isinstance(out_details, Mapping) else {}
        prompt = _int(raw.get("prompt_tokens"))
        read = _int(details.get("cached_tokens") or raw.get("cache_read_input_tokens"))
        write = _int(raw.get("cache_creation_input_tokens"))
        return Usage(
            input=max(0, prompt - read - write),
            cache_read=read,
            cache_write=write,
            output=_int(raw.get("completion_tokens")),
            reasoning=_int(out_details.get("reasoning_tokens")),
        )
    if "input_tokens" in raw or "output_tokens" in raw:
        in_details = raw.get("input_tokens_details")
        out_details = raw.get("output_tokens_details")
        out_details = out_details if isinstance(out_details, Mapping) else {}
        if isinstance(in_details, Mapping):  # OpenAI Responses: input includes cache
            read = _int(in_details.get("cached_tokens"))
            uncached = max(0, _int(raw.get("input_tokens")) - read)
        else:  # Anthropic: input_tokens excludes cache reads and writes
            read = _int(raw.get("cache_read_input_tokens"))
            uncached = _int(raw.get("input_tokens"))
        return Usage(
            input=uncached,
            cache_read=read,
            cache_write=_int(raw.get("cache_creation_input_tokens")),
            output=_int(raw.get("output_tokens")),
            reasoning=_int(out_details.get("reasoning_tokens")),
        )
    return None


def _list(value: Any) -> list[Any]:
    """`value` if it is a list, else nothing: these run on bodies that other
    code validates later or never (a speech request's stray `messages`, a
    provider's malformed `choices`), and must not turn bad input into a 500."""
    return value if isinstance(value, list) else []


def estimate_tokens(chars: int) -> int:
    """Tokens for `chars` characters of text when no count was given."""
    return math.ceil(max(0, chars) / CHARS_PER_TOKEN)


def request_chars(body: Mapping[str, Any]) -> int:
    """Characters of prompt text in a chat or embeddings request body."""
    total = 0
    for msg in _list(body.get("messages")):
        if isinstance(msg, Mapping):
            total += _text_chars(msg.get("content"))
    if "input" in body:
        total += _text_chars(body.get("input"))
    total += _text_chars(body.get("instructions"))  # a Responses API body
    return total


def response_chars(response: Mapping[str, Any] | None) -> int:
    """Characters of generated text in a chat completion."""
    if not isinstance(response, Mapping):
        return 0
    return _choices_chars(response, "message")


def chunk_chars(chunk: Mapping[str, Any]) -> int:
    """Characters of generated text in one stream chunk."""
    return _choices_chars(chunk, "delta")


def _choices_chars(answer: Mapping[str, Any], part: str) -> int:
    """Characters of text content in each choice's `part` (message, delta)."""
    total = 0
    for choice in _list(answer.get("choices")):
        if isinstance(choice, Mapping):
            inner = choice.get(part) or {}
            if isinstance(inner, Mapping):
                total += _text_chars(inner.get("content"))
    return total


def _text_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += len(part)
            elif isinstance(part, list):  # a batch of pre-tokenised inputs
                total += _text_chars(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                total += len(part["text"])
            elif isinstance(part, Mapping) and "content" in part:
                # a Responses API input item (a message) in a native body
                total += _text_chars(part["content"])
            elif isinstance(part, int):
                total += CHARS_PER_TOKEN  # a pre-tokenised input: one token each
        return total
    return 0


def estimate(
    body: Mapping[str, Any], output_chars: int, *, output_tokens: int | None = None
) -> Usage:
    """An estimated Usage from text lengths (marked estimated)."""
    return Usage(
        input=estimate_tokens(request_chars(body)),
        output=output_tokens
        if output_tokens is not None
        else estimate_tokens(output_chars),
        estimated=True,
    )
