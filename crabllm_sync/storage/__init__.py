"""The Storage protocol (counters, values with TTL) and open_storage(config).

Extensions keep their state only through this; keys with a per-extension prefix.
"""

from __future__ import annotations

from typing import Protocol

from crabllm_sync.config import Config


class Storage(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add `amount` atomically and return the new value; `ttl` applies on create."""
        ...

    def list_prefix(self, prefix: str) -> list[tuple[str, bytes]]: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...


def open_storage(config: Config) -> Storage:
    """The store named by `[storage] kind`."""
    kind = config.storage.kind
    if kind == "memory":
        from crabllm_sync.storage.memory import MemoryStorage

        return MemoryStorage()
    if kind == "sqlite":
        from crabllm_sync.storage.sqlite import SqliteStorage

        return SqliteStorage(config.storage.path or "crabllm.db")
    if kind == "redis":
        from crabllm_sync.storage.redis import RedisStorage

        return RedisStorage(
            config.storage.path or "redis://127.0.0.1:6379/0",
            failover_wait=config.storage.failover_wait,
        )
    raise ValueError(f"unknown storage kind {kind!r}")
