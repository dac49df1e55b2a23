"""crabllm.toml: pydantic models, `${VAR}` expansion and load_config().

The only reader of `${VAR}`; everything else gets a validated `Config`.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

_VAR = re.compile(r"\$\{([^}]*)\}")

# Kinds with their own adapter; any other string is an OpenAI-compatible server.
NATIVE_KINDS = ("openai", "anthropic", "google", "azure", "bedrock", "ollama", "mock")


class ConfigError(Exception):
    """A config that cannot be used; the message names the field and file line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RateLimitConfig(_Strict):
    requests_per_minute: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("requests_per_minute", "rpm")
    )
    tokens_per_minute: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("tokens_per_minute", "tpm")
    )


class ProviderConfig(_Strict):
    kind: str = "openai"
    api_key: str = ""
    base_url: str | None = None
    models: list[str] = Field(default_factory=list)
    weight: float = Field(1, ge=0)
    max_retries: int = Field(2, ge=0, le=10)
    timeout: float = Field(30, gt=0)
    # model -> its own read timeout (seconds), for models slower than the rest.
    model_timeouts: dict[str, float] = Field(default_factory=dict)
    api_version: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


class KeyConfig(_Strict):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@:-]+$")
    key: str = Field(min_length=8)
    models: list[str] = Field(default_factory=lambda: ["*"])
    rate_limit: RateLimitConfig | None = None
    budget: float | None = Field(None, ge=0)
    max_parallel_requests: int | None = Field(None, ge=1)
    expires_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class PricingConfig(_Strict):
    prompt_cost_per_million: float = Field(0.0, ge=0)
    completion_cost_per_million: float = Field(0.0, ge=0)
    cache_read_cost_per_million: float | None = Field(None, ge=0)
    cache_write_cost_per_million: float | None = Field(None, ge=0)
    cost_per_image: float | None = Field(None, ge=0)
    cost_per_million_characters: float | None = Field(None, ge=0)
    cost_per_second: float | None = Field(None, ge=0)
    # Output tokens budgets and TPM reserve when a request sets no max_tokens.
    max_output_tokens: int | None = Field(None, ge=1)


class RateLimitExtension(RateLimitConfig):
    fail_open: bool = False
    # Seconds a max_parallel_requests slot outlives a gateway that died holding
    # it; None: request_deadline + 60. Streams renew theirs (concurrency.py).
    lease_seconds: float | None = Field(None, gt=0)


class CacheExtension(_Strict):
    ttl_seconds: int = Field(
        300, ge=1, validation_alias=AliasChoices("ttl_seconds", "ttl")
    )
    shared: bool = False
    fail_open: bool = True


class UsageExtension(_Strict):
    flush_interval: float = Field(1.0, gt=0)
    batch_size: int = Field(200, ge=1)


class BudgetKey(_Strict):
    budget: float = Field(ge=0)


class BudgetExtension(_Strict):
    default_budget: float | None = Field(None, ge=0)
    # crabllm's field; its unit is not USD, so it is accepted and ignored (warned).
    default_limit: float | None = None
    period: Literal["daily", "weekly", "monthly", "never"] = "never"
    keys: dict[str, BudgetKey] = Field(default_factory=dict)
    fail_open: bool = False
    # A model with no price costs $0: refuse it to keys with a budget, or allow.
    unpriced: Literal["refuse", "allow"] = "refuse"
    # Output tokens reserved for a request without max_tokens on a model whose
    # output maximum is not known ([pricing.MODEL] max_output_tokens, built-in).
    default_max_output_tokens: int = Field(4096, ge=1)


class LoggingExtension(_Strict):
    level: str = "info"
    json_format: bool = Field(
        False, validation_alias=AliasChoices("json_format", "json")
    )
    log_prompts: bool = False


class AuditExtension(_Strict):
    """The request log: one record per request in the SQL store (docs/console.md)."""

    enabled: bool = True
    retention_days: float = Field(30, gt=0)
    # Request and response bodies, secrets redacted, each cut at max_body_bytes.
    bodies: bool = False
    max_body_bytes: int = Field(16_384, ge=256, le=1_048_576)
    flush_interval: float = Field(1.0, gt=0)
    batch_size: int = Field(200, ge=1)


class OtelExtension(_Strict):
    """OpenTelemetry export (tracing/): off unless this section (or the OTLP
    endpoint variables of the OTEL_* environment) is present."""

    # OTLP/HTTP base URL (http://collector:4318); none: OTEL_EXPORTER_OTLP_*.
    endpoint: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # None: OTEL_SERVICE_NAME, else "crabllm-sync".
    service_name: str | None = None
    traces: bool = True
    # The GenAI histograms: ~90 us of CPU a request with the SDK, so opt-in.
    metrics: bool = False
    sample_ratio: float = Field(1.0, ge=0, le=1)
    export_timeout: float = Field(10, gt=0)
    metrics_interval: float = Field(60, gt=0)


class ExtensionsConfig(_Strict):
    rate_limit: RateLimitExtension | None = None
    cache: CacheExtension | None = None
    usage: UsageExtension | None = None
    budget: BudgetExtension | None = None
    logging: LoggingExtension | None = None
    audit: AuditExtension | None = None
    otel: OtelExtension | None = None


class StorageConfig(_Strict):
    kind: Literal["memory", "sqlite", "redis"] = "memory"
    path: str | None = None
    # redis+cluster:// and redis+sentinel:// only: seconds from a primary's
    # failure that operations wait for a new one before 503s; 0 = at once.
    failover_wait: float = Field(5, ge=0)
    database: str | None = None
    # PostgreSQL `database` only: seconds to connect, and per statement.
    connect_timeout: float = Field(3, gt=0)
    statement_timeout: float = Field(10, ge=0)
    # Raw usage rows older than this many days are deleted (the hourly and
    # daily rollups that totals read are kept); None keeps them all.
    usage_retention_days: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _redis_url(self) -> StorageConfig:
        """A malformed redis URL is a config error, before any worker starts."""
        if self.kind == "redis" and self.path:
            # Imported here: the storage package imports this module.
            from crabllm_sync.storage.redis_url import parse_redis_url

            parse_redis_url(self.path)
        return self


class RoutingConfig(_Strict):
    cooldown_seconds: float = Field(30, ge=0)
    failure_threshold: int = Field(3, ge=1)
    keepalive_seconds: float = Field(15, gt=0)
    request_deadline: float = Field(300, gt=0)
    # The most a request may ask for in its x-crabllm-timeout header (seconds).
    max_request_timeout: float = Field(600, gt=0)


class ResponsesConfig(_Strict):
    """The Responses API (/v1/responses): stored conversation state and what a
    bridged model does with a feature it cannot serve."""

    ttl: int = Field(30 * 86400, ge=1)  # seconds a stored response is kept
    # SQL store: seconds a stored response may wait in its worker's buffer
    # before the batch write; other workers see it that much later at most.
    flush_interval: float = Field(0.1, gt=0, le=1.0)
    # True: a feature a bridged model cannot serve (a hosted tool, background)
    # is a 400 naming it; False: it is left out, named in x-crabllm-omitted.
    strict: bool = False


class Config(_Strict):
    listen: str = "0.0.0.0:8080"
    admin_token: str | None = None
    # Bearer token for GET /metrics (the admin token works there too).
    metrics_token: str | None = None
    shutdown_timeout: int = Field(30, ge=0)
    max_body_size: int = Field(10 * 1024 * 1024, ge=1024)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    keys: list[KeyConfig] = Field(default_factory=list)
    pricing: dict[str, PricingConfig] = Field(default_factory=dict)
    extensions: ExtensionsConfig = Field(default_factory=ExtensionsConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    # crabllm fields accepted so a crabllm.toml loads unchanged; no effect yet.
    models: Any = None
    cloud_models: Any = None
    openapi: Any = None

    def warnings(self) -> list[str]:
        """Accepted settings that have no effect here, for the start-up log."""
        out = [
            f"config field '{name}' is accepted for crabllm compatibility "
            "and has no effect"
            for name in ("models", "cloud_models", "openapi")
            if getattr(self, name) is not None
        ]
        from crabllm_sync.pricing import unpriced_models

        budget = self.extensions.budget
        for model in unpriced_models(self):
            out.append(
                f"model '{model}' has no price: its requests cost $0 in usage, "
                + (
                    "and keys with a budget are refused it"
                    if budget is None or budget.unpriced == "refuse"
                    else "and budgets do not limit it"
                )
                + f'; set [pricing."{model}"]'
            )
        if budget is not None and budget.default_limit is not None:
            out.append(
                "extensions.budget.default_limit (crabllm) has no effect; "
                "use default_budget (USD)"
            )
        return out


def expand_env(value: Any, env: Mapping[str, str]) -> Any:
    """Replace `${VAR}` in every string of a parsed TOML tree; unknown -> ''."""
    if isinstance(value, str):
        if "${" not in value:
            return value
        return _VAR.sub(lambda m: env.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: expand_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env) for v in value]
    return value


def _check(config: Config) -> list[tuple[tuple[Any, ...], str]]:
    """Cross-field rules pydantic cannot see on one field."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for name, p in config.providers.items():
        if p.kind not in NATIVE_KINDS and not p.base_url:
            problems.append(
                (
                    ("providers", name, "base_url"),
                    f"kind '{p.kind}' is OpenAI-compatible and needs base_url",
                )
            )
        if p.kind == "azure" and not p.base_url:
            problems.append(
                (
                    ("providers", name, "base_url"),
                    "azure needs base_url (https://RESOURCE.openai.azure.com)",
                )
            )
        for model, seconds in p.model_timeouts.items():
            if model not in p.models:
                problems.append(
                    (
                        ("providers", name, "model_timeouts", model),
                        f"'{model}' is not one of this provider's models",
                    )
                )
            if not seconds > 0:
                problems.append(
                    (
                        ("providers", name, "model_timeouts", model),
                        "a timeout must be more than 0 seconds",
                    )
                )
    seen_names: set[str] = set()
    seen_keys: set[str] = set()
    for i, k in enumerate(config.keys):
        if k.name in seen_names:
            problems.append((("keys", i, "name"), f"duplicate key name '{k.name}'"))
        if k.key in seen_keys:
            problems.append((("keys", i, "key"), "the same key secret is listed twice"))
        if k.name.lower() == "admin":
            problems.append(
                (("keys", i, "name"), "the name 'admin' is reserved for admin_token")
            )
        seen_names.add(k.name)
        seen_keys.add(k.key)
    models = {m for p in config.providers.values() for m in p.models}
    for alias, target in config.aliases.items():
        if target not in models:
            problems.append(
                (
                    ("aliases", alias),
                    f"alias '{alias}' points at '{target}', which no provider serves",
                )
            )
    return problems


def check_config(config: Config) -> list[str]:
    """The cross-field problems of an assembled config, one line each (the
    run-time provider API checks a config before serving it)."""
    return [_format(loc, msg, "") for loc, msg in _check(config)]


def parse_config(
    data: dict[str, Any], env: Mapping[str, str] | None = None, *, source: str = ""
) -> Config:
    """Validate an already-parsed TOML tree (env expansion included)."""
    expanded = expand_env(data, os.environ if env is None else env)
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    problems = _check(config)
    if problems:
        raise ConfigError("\n".join(_format(loc, msg, source) for loc, msg in problems))
    return config


def load_config(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> Config:
    """Read, expand and validate a crabllm.toml; ConfigError says what is wrong."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    return parse_config(data, env, source=f"{p}\n{text}")


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(_format(loc, msg, source))
    return "\n".join(lines)


def _format(loc: tuple[Any, ...], msg: str, source: str) -> str:
    dotted = ".".join(str(x) for x in loc)
    path, _, text = source.partition("\n")
    where = path or "config"
    line = _find_line(text, loc) if text else None
    if line is not None:
        where = f"{where}:{line}"
    return f"{where}: {dotted}: {msg}"


def _find_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of the field `loc` in the TOML text (1-based)."""
    keys = [str(x) for x in loc if not isinstance(x, int)]
    if not keys:
        return None
    lines = text.splitlines()
    # Start after the innermost table header that names a prefix of loc.
    start = 0
    for depth in range(len(keys), 0, -1):
        header = ".".join(keys[:depth])
        pat = re.compile(r"^\s*\[\[?\s*" + re.escape(header) + r"\s*\]\]?\s*$")
        for i, ln in enumerate(lines):
            if pat.match(ln):
                start = i
                if depth == len(keys):
                    return i + 1
                break
        else:
            continue
        break
    last = re.compile(r"^\s*\"?" + re.escape(keys[-1]) + r"\"?\s*=")
    for i in range(start, len(lines)):
        if last.match(lines[i]):
            return i + 1
    return start + 1 if start else None
