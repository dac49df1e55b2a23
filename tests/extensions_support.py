"""Helpers for the extension tests: configs, a switchable storage, a fake clock."""

from __future__ import annotations

from typing import Any

from crabllm_sync.errors import ServiceUnavailableError
from crabllm_sync.extensions import build_extensions
from crabllm_sync.storage.memory import MemoryStorage
from tests.conftest import make_config, openai_provider
from tests.upstream import Upstream

KEY_A = "sk-team-a-secret-0001"
KEY_B = "sk-team-b-secret-0002"
ADMIN = "admin-token-for-tests-0123456789abcdef"

# Prices set in the test config, in USD per million tokens: 1 token of input
# costs 1000 nanodollars, 1 token of output 2000 (hand-checked expectations).
IN_NANOS = 1000
OUT_NANOS = 2000


def cost(prompt: int, completion: int) -> int:
    return prompt * IN_NANOS + completion * OUT_NANOS


def ext_config(up: Upstream, tmp_path: Any, **over: Any):
    """Two keys, the test prices, an OpenAI-compatible upstream serving `m`."""
    data: dict[str, Any] = {
        "admin_token": ADMIN,
        "providers": {"up": openai_provider(up, ["m", "e"])},
        "keys": [
            {"name": "team-a", "key": KEY_A},
            {"name": "team-b", "key": KEY_B},
        ],
        "pricing": {
            "m": {"prompt_cost_per_million": 1.0, "completion_cost_per_million": 2.0},
            "e": {"prompt_cost_per_million": 1.0},
        },
        "extensions": {"usage": {"flush_interval": 0.05}},
        "storage": {"kind": "memory", "database": f"sqlite:///{tmp_path}/u.db"},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(data.get(k), dict):
            data[k] = {**data[k], **v}
        else:
            data[k] = v
    return make_config(data)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat_body(text: str = "hello", **over: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **over}


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class SwitchableStorage(MemoryStorage):
    """Memory storage that can be made to fail as the real backends do when
    their server is unreachable (ServiceUnavailableError after a timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ServiceUnavailableError("storage unavailable (test): down")

    def get(self, key: str) -> bytes | None:
        self._check()
        return super().get(key)

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._check()
        super().set(key, value, ttl)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        self._check()
        return super().incr(key, amount, ttl)

    def list_prefix(self, prefix: str) -> list[tuple[str, bytes]]:
        self._check()
        return super().list_prefix(prefix)

    def delete(self, key: str) -> None:
        self._check()
        super().delete(key)


def with_clock(app: Any, clock: FakeClock) -> Any:
    """Rebuild the app's extensions on a fake wall clock (windows, periods)."""
    gw = app.extensions["crabllm"]
    for old in gw.extensions:
        old.close()
    gw.clock = clock
    gw.extensions = build_extensions(gw.config, gw.storage, clock=clock)
    return app
