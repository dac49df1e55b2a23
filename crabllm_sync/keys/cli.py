"""`crabllm-sync keys ...` and `crabllm-sync usage`: on the configured storage.

They open the SQL database of `[storage]` directly; no server is needed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
import orjson

from crabllm_sync.cli_common import config_option, database
from crabllm_sync.db import unavailable_as_503
from crabllm_sync.errors import GatewayError
from crabllm_sync.keys.model import KeyRecord, KeyUpdate, NewKey, iso, parse_body
from crabllm_sync.keys.store import KeyStore

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

NO_DATABASE = (
    "[storage] kind = 'memory' keeps keys inside the gateway process; "
    "use the admin API (/v1/admin/keys) or sqlite/redis storage"
)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@contextmanager
def _store(config_path: str) -> Iterator[KeyStore]:
    """The key store on the configured SQL database (migrated, [[keys]] loaded).

    Gateway errors (a locked or unreachable database, 404, 409) become clean
    CLI errors with exit status 1.
    """
    with database(config_path, NO_DATABASE) as (config, db):
        store = KeyStore(db)
        store.start(config.keys)
        with unavailable_as_503():
            yield store


def _models(values: Sequence[str]) -> list[str] | None:
    out = [m.strip() for v in values for m in v.split(",") if m.strip()]
    return out or None


def _body(
    *,
    models: Sequence[str],
    rpm: int | None,
    tpm: int | None,
    budget: float | None,
    max_parallel: int | None,
    expires_at: str | None,
    metadata: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if _models(models):
        body["models"] = _models(models)
    if rpm is not None or tpm is not None:
        body["rate_limit"] = {"requests_per_minute": rpm, "tokens_per_minute": tpm}
    if budget is not None:
        body["budget"] = budget
    if max_parallel is not None:
        body["max_parallel_requests"] = max_parallel
    if expires_at is not None:
        body["expires_at"] = expires_at
    if metadata is not None:
        try:  # the same parser as the HTTP API
            body["metadata"] = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise click.BadParameter(
                f"not JSON: {exc}", param_hint="--metadata"
            ) from None
    return body


def _parse(model: Any, body: dict[str, Any]) -> Any:
    try:
        return parse_body(model, body)
    except GatewayError as exc:
        raise click.UsageError(exc.message) from None


def key_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option(
                "--models",
                multiple=True,
                metavar="PATTERNS",
                help="Allowed models: '*', names, globs like 'gpt-4o*' "
                "(repeat or comma-separate).",
            ),
            click.option("--rpm", type=int, help="Requests per minute."),
            click.option("--tpm", type=int, help="Tokens per minute."),
            click.option("--budget", type=float, help="Budget in USD."),
            click.option(
                "--max-parallel", type=int, help="Concurrent requests at most."
            ),
            click.option(
                "--expires-at",
                metavar="WHEN",
                help="ISO 8601 date or time (UTC unless a zone is given).",
            ),
            click.option("--metadata", metavar="JSON", help="A JSON object."),
        ]
    ):
        fn = option(fn)
    return fn


def _row(r: KeyRecord, now: float) -> list[str]:
    return [
        r.name,
        r.key_prefix,
        r.status(now),
        ",".join(r.models),
        _dash(r.requests_per_minute),
        _dash(r.tokens_per_minute),
        _dash(r.budget),
        iso(r.expires_at) or "-",
        r.source,
    ]


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _echo_record(record: KeyRecord, as_json: bool, secret: str | None = None) -> None:
    data = record.to_json(time.time())
    if secret is not None:
        data["key"] = secret
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for k, v in data.items():
        if k != "object":
            click.echo(f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}")


@click.group()
def keys() -> None:
    """Create, list, show, update and revoke virtual keys."""


@keys.command("create")
@config_option
@click.argument("name")
@key_options
@json_option
def create_key(config_path: str, name: str, as_json: bool, **opts: Any) -> None:
    """Create key NAME and print its secret (shown this once)."""
    spec = _parse(NewKey, {"name": name, **_body(**opts)})
    with _store(config_path) as store:
        record, secret = store.create(spec)
    if as_json:
        _echo_record(record, True, secret)
    else:
        click.echo(secret)
        click.echo(
            f"created key '{record.name}' ({record.key_prefix}); "
            "the secret above is not shown again",
            err=True,
        )


@keys.command("list")
@config_option
@json_option
def list_keys(config_path: str, as_json: bool) -> None:
    """Every key with its status (never the secret)."""
    with _store(config_path) as store:
        records = store.list()
    now = time.time()
    if as_json:
        click.echo(json.dumps([r.to_json(now) for r in records], indent=2))
        return
    header = [
        "NAME",
        "PREFIX",
        "STATUS",
        "MODELS",
        "RPM",
        "TPM",
        "BUDGET",
        "EXPIRES",
        "SOURCE",
    ]
    click.echo(_table(header, [_row(r, now) for r in records]))


@keys.command("show")
@config_option
@click.argument("name")
@json_option
def show_key(config_path: str, name: str, as_json: bool) -> None:
    """One key's record."""
    with _store(config_path) as store:
        record = store.get(name)
    _echo_record(record, as_json)


@keys.command("update")
@config_option
@click.argument("name")
@key_options
@click.option(
    "--clear",
    multiple=True,
    type=click.Choice(
        ["rate_limit", "budget", "max_parallel_requests", "expires_at", "metadata"]
    ),
    help="Remove a setting (repeatable).",
)
@json_option
def update_key(
    config_path: str, name: str, clear: Sequence[str], as_json: bool, **opts: Any
) -> None:
    """Change a key's models, limits, budget, expiry or metadata."""
    body = _body(**opts)
    for field in clear:
        body[field] = None
    if not body:
        raise click.UsageError("nothing to change: give an option or --clear")
    with _store(config_path) as store:
        if "rate_limit" in body and body["rate_limit"] is not None:
            # One of --rpm/--tpm alone keeps the other as it is.
            current = store.get(name)
            rl = body["rate_limit"]
            if rl["requests_per_minute"] is None:
                rl["requests_per_minute"] = current.requests_per_minute
            if rl["tokens_per_minute"] is None:
                rl["tokens_per_minute"] = current.tokens_per_minute
        record = store.update(name, _parse(KeyUpdate, body))
    _echo_record(record, as_json)


@keys.command("revoke")
@config_option
@click.argument("name")
def revoke_key(config_path: str, name: str) -> None:
    """Revoke a key: refused everywhere within 5 seconds."""
    with _store(config_path) as store:
        record = store.revoke(name)
    click.echo(f"revoked key '{record.name}' at {iso(record.revoked_at)}")


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    m = _DURATION.match(value.strip())
    if m:
        return time.time() - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            "use an ISO 8601 date/time or a duration like 24h, 7d", param_hint="--since"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


@click.command()
@config_option
@click.option("--key", "key_name", metavar="NAME", help="Only this key.")
@click.option("--model", metavar="MODEL", help="Only this model.")
@click.option("--since", metavar="WHEN", help="ISO 8601 time, or 24h / 7d / 30m.")
@json_option
def usage(
    config_path: str,
    key_name: str | None,
    model: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Requests, tokens and cost per key and model."""
    start = _since(since)
    with _store(config_path) as store:
        assert store.db is not None  # _store refuses memory storage
        rows = store.db.usage_totals(key_name=key_name, model=model, since=start)
    for row in rows:
        row["cost_usd"] = row.get("cost_nanos", 0) / 1e9
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ["KEY", "MODEL", "REQUESTS", "INPUT", "OUTPUT", "COST_USD"]
    table = [
        [
            row["key_name"] or "-",
            row["model"],
            str(row["requests"]),
            str(
                row["input_tokens"]
                + row["cache_read_tokens"]
                + row["cache_write_tokens"]
            ),
            str(row["output_tokens"]),
            f"{row['cost_usd']:.6f}",
        ]
        for row in rows
    ]
    if rows:
        table.append(
            [
                "TOTAL",
                "",
                str(sum(r["requests"] for r in rows)),
                str(
                    sum(
                        r["input_tokens"]
                        + r["cache_read_tokens"]
                        + r["cache_write_tokens"]
                        for r in rows
                    )
                ),
                str(sum(r["output_tokens"] for r in rows)),
                f"{sum(r['cost_usd'] for r in rows):.6f}",
            ]
        )
    click.echo(_table(header, table))
