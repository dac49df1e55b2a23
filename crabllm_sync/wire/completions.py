"""Builders for the OpenAI chat objects translating providers answer with
(and the user messages translated requests are made of).

chat.completion, chat.completion.chunk, usage and tool calls, fields in OpenAI's
order. Pure: the caller passes id, model and created.
"""

from __future__ import annotations

from typing import Any


def completion(
    id: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    """A chat.completion object."""
    return _object("chat.completion", id, model, created, choices, usage=usage)


def choice(
    message: dict[str, Any], finish_reason: str | None, index: int = 0
) -> dict[str, Any]:
    """One choice of a chat.completion (providers send no logprobs)."""
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": finish_reason,
    }


def chunk(
    id: str | None,
    model: str,
    created: int,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    index: int = 0,
) -> dict[str, Any]:
    """A chat.completion.chunk carrying one choice's delta."""
    one = {
        "index": index,
        "delta": delta,
        "logprobs": None,
        "finish_reason": finish_reason,
    }
    return _object("chat.completion.chunk", id, model, created, [one])


def usage_chunk(
    id: str | None, model: str, created: int, usage: dict[str, Any] | None
) -> dict[str, Any]:
    """The closing chunk of stream_options.include_usage: no choices, the usage."""
    return _object("chat.completion.chunk", id, model, created, [], usage=usage)


def usage(
    prompt: int,
    completion: int,
    *,
    prompt_details: dict[str, int] | None = None,
    completion_details: dict[str, int] | None = None,
    **extra: int,
) -> dict[str, Any]:
    """OpenAI usage; details (cached_tokens, reasoning_tokens) only when given.

    `extra` keeps provider counts OpenAI has no name for (Anthropic's cache
    reads and writes), after the standard fields.
    """
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if prompt_details is not None:
        out["prompt_tokens_details"] = prompt_details
    if completion_details is not None:
        out["completion_tokens_details"] = completion_details
    out.update(extra)
    return out


def user_message(parts: list[dict[str, Any]], sep: str = "") -> dict[str, Any]:
    """A user message of content parts: a plain string when all are text."""
    if all(p["type"] == "text" for p in parts):
        return {"role": "user", "content": sep.join(p["text"] for p in parts)}
    return {"role": "user", "content": parts}


def tool_call(id: str | None, name: str | None, arguments: str) -> dict[str, Any]:
    """A complete tool call of an assistant message."""
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def tool_call_start(
    index: int, id: str | None, name: str | None, arguments: str = ""
) -> dict[str, Any]:
    """The first delta of a streamed tool call: its index, id and name."""
    return {"index": index, **tool_call(id, name, arguments)}


def tool_call_arguments(index: int, arguments: str) -> dict[str, Any]:
    """A following delta of a streamed tool call: a piece of its arguments."""
    return {"index": index, "function": {"arguments": arguments}}


def _object(
    kind: str,
    id: str | None,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    **rest: Any,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": kind,
        "created": created,
        "model": model,
        "choices": choices,
        **rest,
    }
