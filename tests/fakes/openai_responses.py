"""OpenAI's Responses API wire format (POST /v1/responses, and Azure's
/openai/v1/responses): a Response object, or its named SSE events with
sequence_number, as the API sends them.

Echoes the last user text ("echo: <text>"), keeps the responses it stored
(`store` defaults to true) so `previous_response_id` of one it does not
know is a 404 in OpenAI's shape, and answers 401 without a key.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

from tests.upstream import Recorded, Reply

RESPONSES_PATH = r"/responses$"
INPUT_TOKENS = 9

_ids = itertools.count(1)


def _error(status: int, message: str, param: str | None, code: str) -> Reply:
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error",
            "param": param,
            "code": code,
        }
    }
    return Reply(status=status, json=body)


def last_user_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    for item in reversed(value or []):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if "text" in p)
    return ""


def response(body: dict[str, Any], rid: str, text: str, status: str) -> dict[str, Any]:
    words = text.split(" ")
    done = status == "completed"
    msg_id = f"msg_{rid}"
    return {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body["model"],
        "output": (
            [
                {
                    "id": msg_id,
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": text,
                            "annotations": [],
                            "logprobs": [],
                        }
                    ],
                }
            ]
            if done
            else []
        ),
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": (
            {
                "input_tokens": INPUT_TOKENS,
                "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
                "output_tokens": len(words),
                "output_tokens_details": {"reasoning_tokens": 1},
                "total_tokens": INPUT_TOKENS + len(words),
            }
            if done
            else None
        ),
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def events(body: dict[str, Any], rid: str, text: str) -> list[bytes]:
    """The stream of one text answer, in the API's order."""
    seq = itertools.count()
    msg_id = f"msg_{rid}"
    common = {"item_id": msg_id, "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    start = response(body, rid, text, "in_progress")
    final = response(body, rid, text, "completed")
    out: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": start}),
        ("response.in_progress", {"response": start}),
        (
            "response.output_item.added",
            {
                "output_index": 0,
                "item": {
                    "id": msg_id,
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                },
            },
        ),
        ("response.content_part.added", {**common, "part": part}),
    ]
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        out.append(
            ("response.output_text.delta", {**common, "delta": piece, "logprobs": []})
        )
    out += [
        ("response.output_text.done", {**common, "text": text, "logprobs": []}),
        (
            "response.content_part.done",
            {**common, "part": {**part, "text": text}},
        ),
        ("response.output_item.done", {"output_index": 0, "item": final["output"][0]}),
        ("response.completed", {"response": final}),
    ]
    return [
        f"event: {name}\ndata: {json.dumps({'type': name, **data, 'sequence_number': next(seq)})}\n\n".encode()  # noqa: E501
        for name, data in out
    ]


class ResponsesApi:
    """The handler, with the ids of the responses it stored."""

    def __init__(self) -> None:
        self.stored: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Reply:
        if not (rec.headers.get("authorization") or rec.headers.get("api-key")):
            return _error(401, "Missing API key", None, "invalid_api_key")
        body = rec.json
        if not body.get("model"):
            return _error(
                400,
                "Missing required parameter: 'model'.",
                "model",
                "missing_required_parameter",
            )
        previous = body.get("previous_response_id")
        if previous and previous not in self.stored:
            return _error(
                404,
                f"Previous response with id '{previous}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        rid = f"up{next(_ids)}"
        text = f"echo: {last_user_text(body.get('input'))}"
        if body.get("store", True):
            with self._lock:
                self.stored.add(f"resp_{rid}")
        if body.get("stream"):
            return Reply(events=events(body, rid, text))  # type: ignore[arg-type]
        return Reply(json=response(body, rid, text, "completed"))
