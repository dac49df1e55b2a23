"""`crabllm-sync providers list|add|update|remove`: run-time providers on the
configured SQL database, checked as the admin API checks them. No server is
needed; running workers serve the change within a few seconds (they poll).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import orjson

from crabllm_sync.catalog.live import NO_DATABASE, Catalog
from crabllm_sync.cli_common import config_option, database
from crabllm_sync.db import unavailable_as_503


@contextmanager
def _catalog(config_path: str) -> Iterator[Catalog]:
    """The catalog on the configured database (migrated); gateway errors
    (refused, 404, 409, a database that is down) exit 1 with the reason."""
    with database(config_path, NO_DATABASE) as (config, db):
        with unavailable_as_503():
            db.migrate()
        yield Catalog(config, db, lambda _: None, config_file=config_path)


def _spec_options(fn: Any) -> Any:
    options = [
        click.option(
            "--kind",
            help="openai, anthropic, google, azure, bedrock, "
            "ollama, mock, or any name for an OpenAI-compatible server.",
        ),
        click.option("--base-url", help="The provider's API root."),
        click.option(
            "--api-key",
            help="The credential, or a ${VAR} reference read from each "
            "worker's environment (keeps the secret out of the database).",
        ),
        click.option(
            "--models", "models", multiple=True, help="Repeat or comma-separate."
        ),
        click.option("--weight", type=float),
        click.option("--max-retries", type=int),
        click.option("--timeout", type=float),
        click.option("--api-version"),
        click.option("--region"),
        click.option("--access-key"),
        click.option("--secret-key"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _spec(models: Sequence[str], **fields: Any) -> dict[str, Any]:
    spec = {k: v for k, v in fields.items() if v is not None}
    listed = [m.strip() for v in models for m in v.split(",") if m.strip()]
    if listed:
        spec["models"] = listed
    return spec


def _line(p: dict[str, Any]) -> str:
    models = ",".join(p["models"]) or "(from /models)"
    return f"{p['name']}\t{p['source']}\t{p['kind']}\t{models}\t{p['api_key'] or '-'}"


@click.group()
def providers() -> None:
    """Providers added at run time (the config file's are read-only)."""


@providers.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_providers(config_path: str, as_json: bool) -> None:
    """Every provider, the config file's and the run-time ones (secrets masked)."""
    with _catalog(config_path) as catalog:
        data = catalog.list()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo("NAME\tSOURCE\tKIND\tMODELS\tAPI_KEY")
    for p in data:
        click.echo(_line(p))


@providers.command("add")
@click.argument("name")
@config_option
@_spec_options
def add(name: str, config_path: str, models: Sequence[str], **fields: Any) -> None:
    """Add provider NAME; refused with the reason when it cannot be served."""
    with _catalog(config_path) as catalog:
        p = catalog.create(name, _spec(models, **fields))
    click.echo(f"added {_line(p)}")


@providers.command("update")
@click.argument("name")
@config_option
@_spec_options
@click.option(
    "--clear", "clear", multiple=True, metavar="FIELD", help="Reset FIELD to default."
)
def update(
    name: str,
    config_path: str,
    models: Sequence[str],
    clear: Sequence[str],
    **fields: Any,
) -> None:
    """Change the given fields of NAME; the others are kept."""
    changes: dict[str, Any] = _spec(models, **fields)
    for field in clear:
        changes[field.replace("-", "_")] = None
    if not changes:
        raise click.UsageError("nothing to change: give an option or --clear")
    with _catalog(config_path) as catalog:
        p = catalog.update(name, changes)
    click.echo(f"updated {_line(p)}")


@providers.command("remove")
@click.argument("name")
@config_option
def remove(name: str, config_path: str) -> None:
    """Remove run-time provider NAME."""
    with _catalog(config_path) as catalog:
        catalog.delete(name)
    click.echo(f"removed {name}")
