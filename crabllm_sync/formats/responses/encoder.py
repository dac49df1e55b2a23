"""The bridged Responses stream on the wire: chat chunk batches through the
EventTranslator (events.py) into SSE frames, and the finished Response handed
to `on_done` (the store) once the last batch is encoded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crabllm_sync import sse
from crabllm_sync.errors import GatewayError
from crabllm_sync.formats.responses.events import Event, EventTranslator


def frame(event: Event) -> bytes:
    return sse.encode_event(event["type"], event)


class ResponsesEncoder:
    """Chat chunks -> Responses events; the last batch completes the Response."""

    def __init__(
        self,
        translator: EventTranslator,
        on_done: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.translator = translator
        self.on_done = on_done  # given the finished Response (to store it)

    def encode(self, batch: Sequence[dict[str, Any]], last: bool) -> bytes:
        events = [e for chunk in batch for e in self.translator.feed(chunk)]
        if last:
            events += self.translator.finish()
            if self.on_done is not None and self.translator.result is not None:
                self.on_done(self.translator.result)
        return b"".join([frame(e) for e in events])

    def error(self, err: GatewayError) -> bytes:
        return b"".join([frame(e) for e in self.translator.failed(err)])
