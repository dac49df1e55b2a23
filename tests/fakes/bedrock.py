"""Bedrock Converse's wire format: JSON answers, AWS event-stream framed streams.

POST /model/{modelId}/converse answers JSON; /converse-stream answers
`application/vnd.amazon.eventstream` binary frames (encoded here). Errors carry
`x-amzn-ErrorType` as Bedrock's do, so botocore parses them like the real ones.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

from tests.upstream import Recorded, Reply, Upstream

CONVERSE_PATH = r"^/model/[^/]+/converse$"
STREAM_PATH = r"^/model/[^/]+/converse-stream$"
INVOKE_PATH = r"^/model/[^/]+/invoke$"
EVENTSTREAM = "application/vnd.amazon.eventstream"
REQUEST_ID = "5d3a3d3c-1111-4b2a-9c1e-0123456789ab"

_STRING = 7  # event-stream header value type: string


def _header(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return struct.pack("!B", len(n)) + n + struct.pack("!BH", _STRING, len(v)) + v


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: prelude, prelude CRC, headers, payload, CRC."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack("!I", zlib.crc32(body))


def event_frame(event: dict[str, Any]) -> bytes:
    """A ConverseStream event {"messageStart": {...}} as Bedrock frames it."""
    ((name, payload),) = event.items()
    if name.endswith("Exception"):
        return exception_frame(name, payload.get("message", ""))
    # Bedrock pads payloads with a "p" field against length side channels.
    body = {**payload, "p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKL"[: 5 + len(name)]}
    return frame(
        {
            ":event-type": name,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        json.dumps(body).encode(),
    )


def exception_frame(exception_type: str, message: str) -> bytes:
    """An exception event inside the stream (throttlingException, ...)."""
    return frame(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        json.dumps({"message": message}).encode(),
    )


def stream_reply(events: list[dict[str, Any]], **kw: Any) -> Reply:
    return Reply(
        chunks=[event_frame(e) for e in events],
        content_type=EVENTSTREAM,
        headers={"x-amzn-RequestId": REQUEST_ID},
        **kw,
    )


def converse_reply(response: dict[str, Any]) -> Reply:
    return Reply(json=response, headers={"x-amzn-RequestId": REQUEST_ID})


def error_reply(status: int, code: str, message: str, **headers: str) -> Reply:
    """An error answer as Bedrock sends it (code in x-amzn-ErrorType)."""
    return Reply(
        status=status,
        json={"message": message},
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": REQUEST_ID,
            **headers,
        },
    )


def response(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 12,
    output_tokens: int = 5,
    **usage: int,
) -> dict[str, Any]:
    """A Converse response body."""
    return {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason,
        "usage": {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "totalTokens": input_tokens + output_tokens + sum(usage.values()),
            **usage,
        },
        "metrics": {"latencyMs": 321},
    }


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def events_for(resp: dict[str, Any], piece: int = 7) -> list[dict[str, Any]]:
    """The ConverseStream events that deliver the same answer as `resp`."""
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    for i, block in enumerate(resp["output"]["message"]["content"]):
        if "text" in block:
            for p in _split(block["text"], piece):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {"text": p},
                            "contentBlockIndex": i,
                        }
                    }
                )
        elif "toolUse" in block:
            tu = block["toolUse"]
            events.append(
                {
                    "contentBlockStart": {
                        "start": {
                            "toolUse": {
                                "toolUseId": tu["toolUseId"],
                                "name": tu["name"],
                            }
                        },
                        "contentBlockIndex": i,
                    }
                }
            )
            for p in _split(json.dumps(tu["input"]), piece):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {"toolUse": {"input": p}},
                            "contentBlockIndex": i,
                        }
                    }
                )
        elif "reasoningContent" in block:
            rt = block["reasoningContent"]["reasoningText"]
            for p in _split(rt["text"], piece):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {"reasoningContent": {"text": p}},
                            "contentBlockIndex": i,
                        }
                    }
                )
            if rt.get("signature"):
                events.append(
                    {
                        "contentBlockDelta": {
                            "delta": {
                                "reasoningContent": {"signature": rt["signature"]}
                            },
                            "contentBlockIndex": i,
                        }
                    }
                )
        events.append({"contentBlockStop": {"contentBlockIndex": i}})
    events.append({"messageStop": {"stopReason": resp["stopReason"]}})
    events.append({"metadata": {"usage": resp["usage"], "metrics": {"latencyMs": 321}}})
    return events


def answer_text(body: dict[str, Any]) -> str:
    for msg in reversed(body.get("messages") or []):
        if msg["role"] == "user":
            texts = [b["text"] for b in msg["content"] if "text" in b]
            return f"echo: {' '.join(texts)}" if texts else "echo"
    return "echo"


def default_response(body: dict[str, Any]) -> dict[str, Any]:
    return response([{"text": answer_text(body)}])


def converse_handler(rec: Recorded) -> Reply:
    return converse_reply(default_response(rec.json))


def stream_handler(rec: Recorded) -> Reply:
    return stream_reply(events_for(default_response(rec.json)))


def vector(text: str, dims: int) -> list[float]:
    """The fake embedding of `text`: its length first, then a fixed ramp."""
    return [len(text) / 100] + [round(i / dims, 4) for i in range(1, dims)]


def tokens(text: str) -> int:
    return len(text.split())


def invoke_handler(rec: Recorded) -> Reply:
    """InvokeModel for Titan (one text) and Cohere (texts) embedding models."""
    body = rec.json
    if "inputText" in body:  # Titan Text Embeddings
        vec = vector(body["inputText"], body.get("dimensions", 1024))
        return Reply(
            json={
                "embedding": vec,
                "inputTextTokenCount": tokens(body["inputText"]),
                "embeddingsByType": {"float": vec},
            },
            headers={"x-amzn-RequestId": REQUEST_ID},
        )
    if "texts" in body:  # Cohere Embed: the count is only in a header
        return Reply(
            json={
                "embeddings": [vector(t, 1024) for t in body["texts"]],
                "id": "emb-1",
                "response_type": "embeddings_floats",
                "texts": body["texts"],
            },
            headers={
                "x-amzn-RequestId": REQUEST_ID,
                "X-Amzn-Bedrock-Input-Token-Count": str(
                    sum(tokens(t) for t in body["texts"])
                ),
            },
        )
    return error_reply(400, "ValidationException", "Malformed input request")


def make_upstream() -> Upstream:
    return Upstream(
        {
            CONVERSE_PATH: converse_handler,
            STREAM_PATH: stream_handler,
            INVOKE_PATH: invoke_handler,
        }
    )
