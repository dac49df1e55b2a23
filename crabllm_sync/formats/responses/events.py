"""Chat chunks -> Responses API stream events, in OpenAI's order.

response.created, response.in_progress, then per output item:
output_item.added, (content_part.added, output_text.delta..., output_text.done,
content_part.done | reasoning_text.delta..., reasoning_text.done |
function_call_arguments.delta..., .done), output_item.done; and last
response.completed (response.incomplete on max tokens, response.failed on an
error). Every event carries a sequence_number, counted from 0.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from crabllm_sync.errors import GatewayError
from crabllm_sync.formats.responses import answer
from crabllm_sync.formats.responses.request import Bridged

log = logging.getLogger(__name__)

Event = dict[str, Any]


class EventTranslator:
    """The state of one streamed Response: the item open now and the output so far."""

    def __init__(
        self,
        body: dict[str, Any],
        bridged: Bridged,
        response_id: str,
        created_at: int | None = None,
    ) -> None:
        self.bridged = bridged
        self.sequence = 0
        created = int(time.time()) if created_at is None else created_at
        self.response = answer.shell(body, response_id, created, body["model"])
        self.output: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item being streamed
        self.text: list[str] = []  # of the open item
        self.calls: dict[int, dict[str, Any]] = {}  # tool_calls index -> item
        self.extra: Any = None  # the message's extra_content (Gemini signature)
        self.call_extras: dict[str, Any] = {}  # call_id -> extra_content
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.started = False
        self.result: dict[str, Any] | None = None  # the finished Response
        self.summary = answer.summarized(body)  # reasoning also as summaries

    def _event(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        snapshot = dict(self.response)
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = self.start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events += self._reasoning(delta["reasoning_content"])
            if delta.get("thinking_blocks"):
                events += self._blocks(delta["thinking_blocks"])
            if delta.get("extra_content"):
                self.extra = delta["extra_content"]
            if delta.get("content"):
                events += self._text(delta["content"])
            for call in delta.get("tool_calls") or ():
                events += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    # -- items -------------------------------------------------------------------

    def _index(self) -> int:
        return len(self.output)

    def _open(self, item: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.open = item
        self.text = []
        events.append(
            self._event(
                "response.output_item.added",
                output_index=self._index(),
                item=dict(item),
            )
        )
        return events

    def _reasoning(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open["type"] != "reasoning":
            item = answer.reasoning_item(answer.new_id("rs"), "", [], "in_progress")
            events += self._open(item)
        item = self.open
        assert item is not None
        where = {"item_id": item["id"], "output_index": self._index()}
        if self.summary and not item.get("_summary"):
            item["_summary"] = True
            part = {"type": "summary_text", "text": ""}
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    **where,
                    summary_index=0,
                    part=part,
                )
            )
        self.text.append(text)
        events.append(
            self._event(
                "response.reasoning_text.delta", **where, content_index=0, delta=text
            )
        )
        if self.summary:
            events.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    **where,
                    summary_index=0,
                    delta=text,
                )
            )
        return events

    def _blocks(self, blocks: list[dict[str, Any]]) -> list[Event]:
        """Signed thinking blocks end the reasoning item they belong to."""
        events: list[Event] = []
        if self.open is None or self.open["type"] != "reasoning":
            item = answer.reasoning_item(answer.new_id("rs"), "", [], "in_progress")
            events += self._open(item)
        self.open.setdefault("_blocks", []).extend(blocks)  # type: ignore[union-attr]
        return events + self._close()

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open is None or self.open["type"] != "message":
            item = answer.message_item(answer.new_id("msg"), "", "in_progress")
            events += self._open(item)
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=self._index(),
                    content_index=0,
                    part=answer.output_text(""),
                )
            )
        self.text.append(text)
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=self.open["id"],  # type: ignore[index]
                output_index=self._index(),
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        index = call.get("index", 0)
        fn = call.get("function") or {}
        item = self.calls.get(index)
        if item is None:
            name, call_id = (
                fn.get("name") or "",
                call.get("id") or answer.new_id("call"),
            )
            item = answer.tool_call_item(
                call_id,
                name,
                "",
                self.bridged.namespaces,
                "in_progress",
                custom=name in self.bridged.custom,
            )
            self.calls[index] = item
            events += self._open(item)
        if call.get("extra_content"):
            self.call_extras[item["call_id"]] = call["extra_content"]
        piece = fn.get("arguments") or ""
        if piece and item is not self.open:
            # Its item is already done (the upstream interleaved its calls):
            # Responses events cannot reopen it. Said, never dropped silently.
            log.warning(
                "responses: arguments for call %s came after its item ended; "
                "left out: %r",
                item["call_id"],
                piece,
            )
        elif piece:
            self.text.append(piece)
            if item["type"] == "custom_tool_call":
                return events  # its input is known once the arguments are whole
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=item["id"],
                    output_index=self._index(),
                    delta=piece,
                )
            )
        return events

    def _close(self) -> list[Event]:
        """End the open item: its done events, then output_item.done."""
        item, self.open = self.open, None
        if item is None:
            return []
        text = "".join(self.text)
        index = self._index()
        events: list[Event] = []
        if item["type"] == "message":
            part = answer.output_text(text)
            common = {"item_id": item["id"], "output_index": index, "content_index": 0}
            events.append(
                self._event(
                    "response.output_text.done", **common, text=text, logprobs=[]
                )
            )
            events.append(
                self._event("response.content_part.done", **common, part=part)
            )
            item = answer.message_item(item["id"], text)
        elif item["type"] == "reasoning":
            blocks = item.pop("_blocks", [])
            where = {"item_id": item["id"], "output_index": index}
            if text:
                events.append(
                    self._event(
                        "response.reasoning_text.done",
                        **where,
                        content_index=0,
                        text=text,
                    )
                )
            if item.pop("_summary", False):
                part = {"type": "summary_text", "text": text}
                events.append(
                    self._event(
                        "response.reasoning_summary_text.done",
                        **where,
                        summary_index=0,
                        text=text,
                    )
                )
                events.append(
                    self._event(
                        "response.reasoning_summary_part.done",
                        **where,
                        summary_index=0,
                        part=part,
                    )
                )
            item = answer.reasoning_item(
                item["id"], text, blocks, as_summary=self.summary
            )
        elif item["type"] == "custom_tool_call":
            item = {**item, "input": answer.custom_input(text), "status": "completed"}
            common = {"item_id": item["id"], "output_index": index}
            events.append(
                self._event(
                    "response.custom_tool_call_input.delta",
                    **common,
                    delta=item["input"],
                )
            )
            events.append(
                self._event(
                    "response.custom_tool_call_input.done",
                    **common,
                    input=item["input"],
                )
            )
        else:
            item = {**item, "arguments": text, "status": "completed"}
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=text,
                )
            )
        events.append(
            self._event("response.output_item.done", output_index=index, item=item)
        )
        self.output.append(item)
        return events

    def _signatures(self) -> list[Event]:
        """Signatures known only once their parts streamed (Gemini's): one
        reasoning item after the output carries them back next turn."""
        item = answer.reasoning_item(
            answer.new_id("rs"),
            "",
            [],
            extra=self.extra,
            calls=self.call_extras,
            trailing=True,
        )
        index = self._index()
        self.output.append(item)
        added = {**item, "status": "in_progress"}
        return [
            self._event("response.output_item.added", output_index=index, item=added),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    # -- the end -----------------------------------------------------------------

    def finish(self) -> list[Event]:
        """The stream finished: close the open item, then the Response."""
        events = self.start() + self._close()
        if self.extra or self.call_extras:
            events += self._signatures()
        status, incomplete = answer.status_of(self.finish_reason)
        response = self.final(status)
        response["incomplete_details"] = incomplete
        kind = "response.completed" if status == "completed" else "response.incomplete"
        if status == "completed":
            response["completed_at"] = int(time.time())
        events.append(self._event(kind, response=response))
        self.result = response
        return events

    def final(self, status: str) -> dict[str, Any]:
        return {
            **self.response,
            "status": status,
            "output": list(self.output),
            "usage": answer.usage(self.usage),
        }

    def failed(self, err: GatewayError) -> list[Event]:
        """The stream failed after it began: the Response as failed."""
        events = self.start()
        response = self.final("failed")
        code = "rate_limit_exceeded" if err.http_status == 429 else "server_error"
        response["error"] = {"code": code, "message": err.message}
        events.append(self._event("response.failed", response=response))
        return events
