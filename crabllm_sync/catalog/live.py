"""The catalog: the providers a gateway serves, from its config file and from
the SQL store, checked before they are served and kept current in every worker.

A change through the admin API or the CLI is checked against the whole
merged config (the file's providers, the other run-time ones, the aliases)
inside the write transaction: refused with the reason, nothing is written.
Once written it bumps the version stamp; each worker's poller reads that
stamp every POLL_INTERVAL seconds (one integer, off the request path) and,
when it moved, reads the rows, builds the merged config and hands it to
`apply` (Gateway.use_providers), which swaps the registry in one assignment.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from crabllm_sync.catalog import spec as specs
from crabllm_sync.catalog.discovery import DISCOVERY_INTERVAL, Discovery
from crabllm_sync.catalog.store import Changes, ProviderRow, ProviderStore
from crabllm_sync.config import Config, ProviderConfig
from crabllm_sync.db import Database
from crabllm_sync.errors import (
    ConflictError,
    GatewayError,
    InvalidRequestError,
    NotFoundError,
)

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0  # seconds between version reads: a change is served within ~1 s
CLOSE_TIMEOUT = 2.0
NO_DATABASE = (
    "providers at run time need a SQL database ([storage] kind sqlite or "
    "redis, or [storage] database)"
)


class Catalog:
    def __init__(
        self,
        file_config: Config,
        db: Database | None,
        apply: Callable[[Config], None],
        *,
        config_file: str = "the config file",
        interval: float = POLL_INTERVAL,
    ) -> None:
        self.file_config = file_config
        self.store = ProviderStore(db) if db is not None else None
        self.apply = apply
        self.config_file = config_file
        self.interval = interval
        self._served: int | None = None  # the version being served
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.discovery = Discovery()
        self.discovery_interval = DISCOVERY_INTERVAL
        self._base: Config | None = None  # served, before discovered models
        self._discovered_at = float("-inf")

    # -- serving -----------------------------------------------------------------

    def start(self) -> None:
        """Serve the stored providers (the file's alone while the store cannot
        be read), discovered models included, and start polling."""
        try:
            self.refresh()
        except GatewayError as exc:
            log.error("run-time providers not loaded yet, polled again: %s", exc)
        if self._base is None:
            with self._lock:
                self._serve([])
        self.ensure_polling()

    def refresh(self) -> bool:
        """Serve the stored providers if their version moved; True if it did."""
        if self.store is None:
            return False
        if self.store.version() == self._served:
            return False
        version, rows = self.store.rows()
        with self._lock:
            if self._served is not None and version <= self._served:
                return False
            self._serve(rows)
            self._served = version
        return True

    def _serve(self, rows: list[ProviderRow]) -> None:
        built: dict[str, ProviderConfig] = {}
        for row in rows:
            if row.name in self.file_config.providers:
                log.warning(
                    "run-time provider '%s' not served: %s defines one of that name",
                    row.name,
                    self.config_file,
                )
                continue
            try:
                built[row.name] = specs.build(row.name, row.spec)
            except GatewayError as exc:  # a kind this host cannot serve
                log.error("run-time provider '%s' not served: %s", row.name, exc)
        config, problems = specs.merged(self.file_config, built)
        if problems:
            log.error(
                "run-time providers not served, the last good set kept: %s",
                "; ".join(problems),
            )
            return
        self._base = config
        self.discovery.discover(config, only_new=True)
        self.apply(self.discovery.fill(config))
        if built:
            log.info("serving %d run-time providers", len(built))

    def rediscover(self) -> bool:
        """Read every discovered provider's /models again; serve what changed."""
        with self._lock:
            self._discovered_at = time.monotonic()
            base = self._base
            if base is None or not self.discovery.discover(base):
                return False
            self.apply(self.discovery.fill(base))
            return True

    def ensure_polling(self) -> None:
        """Start this process's poller (once per process: a fork loses threads)."""
        if self._pid == os.getpid() or self._stop.is_set():
            return
        if self.store is None and not self.discovery.needed(self.file_config):
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            forked = self._pid is not None
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=self._run, name="crabllm-providers", daemon=True
            )
            self._thread.start()
        if forked:
            self._served = None  # a forked copy: read the store again
            self._poll()

    def _run(self) -> None:
        self._discovered_at = time.monotonic()  # start() has just read them
        while not self._stop.wait(self.interval):
            if self.store is not None:
                self._poll()
            if time.monotonic() - self._discovered_at >= self.discovery_interval:
                try:
                    self.rediscover()
                except Exception:
                    log.exception("model discovery failed")

    def _poll(self) -> None:
        try:
            self.refresh()
        except GatewayError as exc:
            if not self._failing:
                log.error("providers: cannot read the store: %s", exc)
            self._failing = True
            return
        except Exception:
            log.exception("providers: refresh failed")
            return
        if self._failing:
            log.info("providers: the store answers again")
        self._failing = False

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(CLOSE_TIMEOUT)

    # -- the admin API and the CLI --------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Every provider: the file's (read-only), then the run-time ones."""
        out = [self._from_file(n) for n in sorted(self.file_config.providers)]
        if self.store is not None:
            _, rows = self.store.rows()
            out += [
                _public(r) for r in rows if r.name not in self.file_config.providers
            ]
        return out

    def get(self, name: str) -> dict[str, Any]:
        specs.check_name(name)
        if name in self.file_config.providers:
            return self._from_file(name)
        _, rows = self._writable().rows()
        for r in rows:
            if r.name == name:
                return _public(r)
        raise _missing(name)

    def create(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        with self._change(name) as ch:
            if name in ch.rows:
                raise ConflictError(
                    f"a provider named '{name}' already exists", param="name"
                )
            self._check({**_specs(ch.rows), name: spec}, name)
            row = ch.put(name, spec)
        return _public(row)

    def update(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self._change(name) as ch:
            new = specs.patched(_existing(ch, name).spec, changes)
            self._check({**_specs(ch.rows), name: new}, name)
            row = ch.put(name, new)
        return _public(row)

    def delete(self, name: str) -> dict[str, Any]:
        with self._change(name) as ch:
            old = _existing(ch, name)
            rest = _specs(ch.rows)
            del rest[name]
            self._check(rest, None)
            ch.remove(name)
        return {**_public(old), "deleted": True}

    @contextmanager
    def _change(self, name: str) -> Iterator[Changes]:
        """One write to run-time provider `name` (never the file's), then
        this worker serves the result at once."""
        specs.check_name(name)
        self._refuse_file(name)
        with self._writable().change() as ch:
            yield ch
        self._poll()

    # -- checks ---------------------------------------------------------------------

    def _writable(self) -> ProviderStore:
        if self.store is None:
            raise ConflictError(NO_DATABASE)
        return self.store

    def _refuse_file(self, name: str) -> None:
        if name in self.file_config.providers:
            raise ConflictError(
                f"provider '{name}' is defined in {self.config_file}, which the "
                "API does not change: edit the file and restart",
                param="name",
            )

    def _check(self, runtime: dict[str, dict[str, Any]], changed: str | None) -> None:
        """Refuse (400, with the reason) a set of providers that cannot be served."""
        built: dict[str, ProviderConfig] = {}
        for name, spec in runtime.items():
            if name in self.file_config.providers:
                continue
            try:
                built[name] = specs.build(name, spec)
            except InvalidRequestError:
                if name == changed:
                    raise
                # Another provider this host cannot build is skipped here as
                # when it is served; it does not block this change.
        _, problems = specs.merged(self.file_config, built)
        if problems:
            raise InvalidRequestError(
                "refused, nothing changed: "
                + "; ".join(p.removeprefix("config: ") for p in problems)
            )

    def _from_file(self, name: str) -> dict[str, Any]:
        p = self.file_config.providers[name]
        return specs.public(name, p.model_dump(), "config", file=self.config_file)


def _specs(rows: Mapping[str, ProviderRow]) -> dict[str, dict[str, Any]]:
    return {name: r.spec for name, r in rows.items()}


def _public(row: ProviderRow) -> dict[str, Any]:
    return specs.public(
        row.name,
        row.spec,
        "api",
        created_at=_iso(row.created_at),
        updated_at=_iso(row.updated_at),
    )


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _existing(ch: Changes, name: str) -> ProviderRow:
    row = ch.rows.get(name)
    if row is None:
        raise _missing(name)
    return row


def _missing(name: str) -> NotFoundError:
    return NotFoundError(f"no provider named '{name}'", param="name")
