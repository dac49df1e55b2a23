"""The built-in price table: list prices per model, and the Price type.

Data only; pricing.py looks models up in it (config overrides first) and
turns usage into cost.
"""

from __future__ import annotations

from dataclasses import dataclass


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

__all__ = ["BUILTIN", "FREE_KINDS", "ZERO_PRICE", "Price"]
