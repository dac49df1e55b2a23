"""Prices and costs: normalised usage, the built-in price table, cost in nanos.

Pure: data in, data out. Money is integer nanodollars (USD x 1e9), so the sum
of per-request costs is exact wherever it is added up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from crabllm_sync.config import Config, PricingConfig

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


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; cache rates default to the input rate.

    Media: USD per image, per million speech characters, per audio second.
    """

    input: float = 0.0
    output: float = 0.0
    cache_read: float | None = None
    cache_write: float | None = None
    per_image: float = 0.0
    per_million_characters: float = 0.0
    per_second: float = 0.0


ZERO_PRICE = Price()

# List prices (USD per million tokens) when this table was written; override
# any of them with [pricing.MODEL]. Keys match a model id or its prefix.
BUILTIN: dict[str, Price] = {
    # OpenAI (cache_read = cached input)
    "gpt-5": Price(1.25, 10.00, 0.125),
    "gpt-5-mini": Price(0.25, 2.00, 0.025),
    "gpt-5-nano": Price(0.05, 0.40, 0.005),
    "gpt-5-pro": Price(15.00, 120.00),
    "gpt-4.1": Price(2.00, 8.00, 0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, 0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, 0.025),
    "gpt-4o": Price(2.50, 10.00, 1.25),
    "gpt-4o-mini": Price(0.15, 0.60, 0.075),
    "gpt-4-turbo": Price(10.00, 30.00),
    "gpt-4": Price(30.00, 60.00),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "gpt-4.5-preview": Price(75.00, 150.00, 37.50),
    "o1": Price(15.00, 60.00, 7.50),
    "o1-pro": Price(150.00, 600.00),
    "o1-mini": Price(1.10, 4.40, 0.55),
    "o3": Price(2.00, 8.00, 0.50),
    "o3-pro": Price(20.00, 80.00),
    "o3-mini": Price(1.10, 4.40, 0.55),
    "o4-mini": Price(1.10, 4.40, 0.275),
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
    # Anthropic (cache_write = 5-minute cache write, 1.25x input; read 0.1x)
    "claude-opus-4-5": Price(5.00, 25.00, 0.50, 6.25),
    "claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75),
    "claude-opus-4": Price(15.00, 75.00, 1.50, 18.75),
    "claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75),
    "claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75),
    "claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25),
    "claude-3-7-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "claude-3-5-haiku": Price(0.80, 4.00, 0.08, 1.00),
    "claude-3-opus": Price(15.00, 75.00, 1.50, 18.75),
    "claude-3-haiku": Price(0.25, 1.25, 0.03, 0.30),
    # Google Gemini (prompts up to 200k tokens; cache_read = context cache)
    "gemini-2.5-pro": Price(1.25, 10.00, 0.125),
    "gemini-2.5-flash": Price(0.30, 2.50, 0.03),
    "gemini-2.5-flash-lite": Price(0.10, 0.40, 0.01),
    "gemini-2.0-flash": Price(0.10, 0.40, 0.025),
    "gemini-2.0-flash-lite": Price(0.075, 0.30),
    "gemini-1.5-pro": Price(1.25, 5.00),
    "gemini-1.5-flash": Price(0.075, 0.30),
    "gemini-embedding-001": Price(0.15),
    "text-embedding-004": Price(0.0),
    # AWS Bedrock ids (a region prefix like "us." is ignored when matching)
    "anthropic.claude-opus-4-1": Price(15.00, 75.00, 1.50, 18.75),
    "anthropic.claude-opus-4": Price(15.00, 75.00, 1.50, 18.75),
    "anthropic.claude-sonnet-4-5": Price(3.00, 15.00, 0.30, 3.75),
    "anthropic.claude-sonnet-4": Price(3.00, 15.00, 0.30, 3.75),
    "anthropic.claude-haiku-4-5": Price(1.00, 5.00, 0.10, 1.25),
    "anthropic.claude-3-7-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "anthropic.claude-3-5-sonnet": Price(3.00, 15.00, 0.30, 3.75),
    "anthropic.claude-3-5-haiku": Price(0.80, 4.00, 0.08, 1.00),
    "anthropic.claude-3-haiku": Price(0.25, 1.25),
    "amazon.nova-pro-v1": Price(0.80, 3.20, 0.20),
    "amazon.nova-lite-v1": Price(0.06, 0.24, 0.015),
    "amazon.nova-micro-v1": Price(0.035, 0.14, 0.00875),
    "amazon.titan-embed-text-v2": Price(0.02),
    "meta.llama3-1-70b-instruct": Price(0.72, 0.72),
    "meta.llama3-1-8b-instruct": Price(0.22, 0.22),
    "mistral.mistral-large-2407": Price(2.00, 6.00),
    # OpenAI media: per second of audio ($0.006 a minute), per million speech
    # characters, per image (1024x1024, standard quality).
    "whisper-1": Price(per_second=0.0001),
    "tts-1": Price(per_million_characters=15.00),
    "tts-1-hd": Price(per_million_characters=30.00),
    "dall-e-3": Price(per_image=0.04),
    "dall-e-2": Price(per_image=0.02),
}

# Provider kinds that answer in process and bill nothing.
FREE_KINDS = frozenset({"mock"})

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
    total = 0
    for choice in _list(response.get("choices")):
        if isinstance(choice, Mapping):
            msg = choice.get("message") or {}
            if isinstance(msg, Mapping):
                total += _text_chars(msg.get("content"))
    return total


def chunk_chars(chunk: Mapping[str, Any]) -> int:
    """Characters of generated text in one stream chunk."""
    total = 0
    for choice in _list(chunk.get("choices")):
        if isinstance(choice, Mapping):
            delta = choice.get("delta") or {}
            if isinstance(delta, Mapping):
                total += _text_chars(delta.get("content"))
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
