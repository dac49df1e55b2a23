"""PostgreSQL for keys and usage: bounded, and cooperative under gevent.

psycopg2 runs each query inside libpq, in C: in a gevent worker a slow query,
a lock wait or an unreachable server froze every greenlet of the worker (and
a freeze past gunicorn's `timeout` got the worker killed with its buffered
usage). So:

- in a monkey-patched process, psycopg2 gets psycogreen's wait callback:
  libpq runs in non-blocking mode and each wait for the socket yields to the
  other greenlets;
- libpq does not apply `connect_timeout` to a non-blocking connect, so the
  connect is bounded by a gevent timeout instead;
- `statement_timeout` (server side) ends a query that runs or waits on a lock
  too long, and TCP keepalives notice a server that vanished mid-query.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import peewee
from playhouse.db_url import parse

# TCP keepalives: a server gone silent is noticed after about
# idle + interval x count = 25 s, instead of the OS default of hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


@dataclass(frozen=True)
class PostgresLimits:
    connect_timeout: float = 3.0  # seconds
    statement_timeout: float = 10.0  # seconds; 0 = no limit


def gevent_patched() -> bool:
    """True in a process whose sockets gevent has monkey-patched (a worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("socket")


def make_psycopg_green() -> None:
    """Let psycopg2 yield to other greenlets while it waits (idempotent)."""
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()


def connect_params(url: str, limits: PostgresLimits) -> dict[str, Any]:
    """peewee/psycopg2 connect kwargs of `url`, with the limits added.

    Parameters given in the URL (`?connect_timeout=1&options=...`) win.
    """
    params = parse(url)
    params.setdefault("connect_timeout", max(1, round(limits.connect_timeout)))
    for name, value in KEEPALIVES.items():
        params.setdefault(name, value)
    options = str(params.get("options") or "")
    if limits.statement_timeout and "statement_timeout" not in options:
        ms = int(limits.statement_timeout * 1000)
        params["options"] = f"{options} -c statement_timeout={ms}".strip()
    return params


@contextmanager
def driver_errors() -> Iterator[None]:
    """psycopg2's errors as peewee's, including those peewee's map misses.

    A statement cancelled by statement_timeout raises QueryCanceled, whose
    parent QueryCanceledError peewee does not know: it escaped as a driver
    error (a 500) instead of peewee's OperationalError (a 503).
    """
    try:
        with peewee.__exception_wrapper__:
            yield
    except peewee.PeeweeException:
        raise
    except Exception as exc:
        psycopg2 = sys.modules.get("psycopg2")
        if psycopg2 is not None and isinstance(exc, psycopg2.OperationalError):
            raise peewee.OperationalError(str(exc)) from exc
        raise


class GreenPostgresqlDatabase(peewee.PostgresqlDatabase):
    """peewee's PostgresqlDatabase: connect bounded under gevent, every
    driver error a peewee error."""

    def __init__(self, database: str, *, connect_seconds: float, **kwargs: Any):
        self.connect_seconds = connect_seconds
        super().__init__(database, **kwargs)

    def _connect(self) -> Any:
        if not gevent_patched():
            return super()._connect()  # libpq applies connect_timeout itself
        import gevent
        import psycopg2

        timeout = psycopg2.OperationalError(
            f"connection timed out after {self.connect_seconds:g} s"
        )
        with gevent.Timeout(self.connect_seconds, timeout):
            return super()._connect()

    def execute_sql(self, sql: str, params: Any = None, commit: Any = None) -> Any:
        with driver_errors():
            return super().execute_sql(sql, params, commit)


def postgresql_database(url: str, limits: PostgresLimits) -> peewee.PostgresqlDatabase:
    """The peewee database of a postgresql:// URL, bounded (and green in a worker)."""
    if gevent_patched():
        make_psycopg_green()
    params = connect_params(url, limits)
    database = params.pop("database")
    return GreenPostgresqlDatabase(
        database, connect_seconds=limits.connect_timeout, **params
    )
