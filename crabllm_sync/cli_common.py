"""What the `crabllm-sync` subcommands share (cli.py, keys/cli.py,
catalog/cli.py): the --config option, the config loaded with its error as
the command's, and the SQL database opened for one command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from crabllm_sync.config import Config, ConfigError, load_config
from crabllm_sync.db import Database, open_database
from crabllm_sync.errors import GatewayError

DEFAULT_CONFIG = "crabllm.toml"

config_option = click.option(
    "--config",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="CRABLLM_CONFIG",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    help="Path of crabllm.toml.",
)


def load(path: str) -> Config:
    """The config at `path`; a bad one ends the command (exit 1, the reason)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def database(config_path: str, missing: str) -> Iterator[tuple[Config, Database]]:
    """The config and its SQL database for one command, closed after it.

    `missing`: the error when the config keeps no database. Gateway errors
    in the block (refused, 404, 409, a database that is down or locked) exit
    1 with their message.
    """
    config = load(config_path)
    db = open_database(config)
    if db is None:
        raise click.ClickException(missing)
    try:
        yield config, db
    except GatewayError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        db.close()
