"""A test extension that records what each finished request left in its context."""

from __future__ import annotations

import threading
from typing import Any

from crabllm_sync.extensions import Extension


class Recorder(Extension):
    name = "recorder"

    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []
        self.finished = threading.Event()

    def on_response(self, ctx, body, response) -> None:  # noqa: ANN001
        self.done.append(
            {"endpoint": ctx.endpoint, "usage": ctx.usage, "provider": ctx.provider}
        )
        self.finished.set()

    def on_error(self, ctx, error) -> None:  # noqa: ANN001
        self.done.append({"endpoint": ctx.endpoint, "error": error})
        self.finished.set()

    def wait(self) -> dict[str, Any]:
        """The last finished request (waits for one, generously)."""
        assert self.finished.wait(10), "the request never finished"
        return self.done[-1]


def attach(app: Any) -> Recorder:
    recorder = Recorder()
    app.extensions["crabllm"].extensions.append(recorder)
    return recorder
