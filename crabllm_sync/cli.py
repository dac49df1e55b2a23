"""The `crabllm-sync` command: init, serve, check, migrate, keys, usage,
providers.

Commands stay thin; `serve` never imports the app in the master process, so
each gevent worker monkey-patches before requests/ssl are imported.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import click

from crabllm_sync.catalog.cli import providers
from crabllm_sync.cli_common import config_option, database, load
from crabllm_sync.config import Config
from crabllm_sync.keys.cli import keys, usage


@click.group()
@click.version_option(package_name="crabllm-sync")
def main() -> None:
    """crabllm-sync: one OpenAI-compatible endpoint for every LLM provider."""


@main.command()
@config_option
@click.option(
    "--bind", metavar="HOST:PORT", help="Listen address (default: config `listen`)."
)
@click.option("--workers", type=int, metavar="N", help="Gevent worker processes.")
def serve(config_path: str, bind: str | None, workers: int | None) -> None:
    """Run the gateway under gunicorn with gevent workers."""
    path = Path(config_path)
    if not path.exists():
        _write_starter(path, bind or "127.0.0.1:8080")
    load(str(path))  # a bad config stops here, with the reason, exit 1
    # Replace this process with gunicorn's master, configured by the same
    # settings module as a plain `gunicorn` run: the master then holds no
    # click, pydantic or app code, and signals reach gunicorn directly.
    env = {**os.environ, "CRABLLM_CONFIG": str(path.resolve())}
    if workers:
        env["WEB_CONCURRENCY"] = str(workers)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:crabllm_sync.serving.gunicorn_conf",
    ]
    if bind:
        argv += ["--bind", bind]
    argv.append("crabllm_sync.wsgi")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


@main.command()
@config_option
@click.option(
    "--listen",
    default="127.0.0.1:8080",
    show_default=True,
    metavar="HOST:PORT",
    help="The listen address written into the config.",
)
def init(config_path: str, listen: str) -> None:
    """Write a starter config (mode 0600); never overwrites an existing file."""
    path = Path(config_path)
    if path.exists():
        raise click.ClickException(
            f"{path} already exists; not overwritten (remove it, or pass --config)"
        )
    _write_starter(path, listen)


def _write_starter(path: Path, listen: str) -> None:
    """Write the starter config at `path` and tell the user its key."""
    from crabllm_sync.starter import write_starter

    try:
        key = write_starter(path, listen=listen)
    except FileExistsError:
        raise click.ClickException(f"{path} already exists; not overwritten") from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc}") from None
    host, _, port = listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]") else host
    click.echo(f"Wrote a starter config to {path.resolve()}")
    click.echo(f"Your virtual key: {key}")
    click.echo("Try it:")
    click.echo(
        f"  curl http://{host}:{port}/v1/chat/completions \\\n"
        f"    -H 'Authorization: Bearer {key}' \\\n"
        "    -H 'Content-Type: application/json' \\\n"
        '    -d \'{"model": "mock", '
        '"messages": [{"role": "user", "content": "hi"}]}\''
    )
    click.echo(f"Console: http://{host}:{port}/ui/")
    click.echo(f"  sign in with the admin_token in {path.resolve()}")
    click.echo(f"API reference: http://{host}:{port}/docs")


@main.command()
@config_option
def check(config_path: str) -> None:
    """Validate a config: exit 0 when usable, 1 with the reason otherwise."""
    config = load(config_path)
    for warning in _config_warnings(config, Path(config_path)):
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"{config_path}: ok ({len(config.providers)} providers, "
        f"{sum(len(p.models) for p in config.providers.values())} models, "
        f"{len(config.keys)} keys)"
    )


@main.command()
@config_option
def migrate(config_path: str) -> None:
    """Bring the SQL database's schema up to date, then exit.

    Workers migrate at start too; run this first when an upgrade has a long
    migration (migration 6 sums every usage row into the rollups), so no
    worker waits on it past its lock timeout."""
    from crabllm_sync.db import MIGRATIONS, unavailable_as_503

    missing = "[storage] kind = 'memory' has no SQL database"
    with database(config_path, missing) as (_config, db), unavailable_as_503():
        db.migrate()
    click.echo(f"schema version {max(MIGRATIONS)}")


def _config_warnings(config: Config, path: Path) -> list[str]:
    out = list(config.warnings())
    if config.admin_token is not None and len(config.admin_token) < 32:
        out.append("admin_token is shorter than 32 characters")
    if config.admin_token == "":
        out.append("admin_token is empty: admin routes are off")
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            out.append(
                f"{path} is readable by other users; it holds secrets (chmod 600)"
            )
    except OSError:
        pass
    return out


main.add_command(keys)
main.add_command(usage)
main.add_command(providers)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


if __name__ == "__main__":  # pragma: no cover
    main()
