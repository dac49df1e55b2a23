"""An openai SDK chat stream folded into one message the way a client folds it,
and a whole completion in the same shape, so the two compare with ==.
"""

from __future__ import annotations

from typing import Any


def assemble(chunks: list[Any]) -> dict[str, Any]:
    """The message a client builds from a stream's chunk objects (choice 0 and up
    folded together; usage from the usage chunk, else None)."""
    content, reasoning, blocks = "", "", []
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = None, None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage.model_dump()
        for choice in chunk.choices:
            delta = choice.delta
            extra = delta.model_extra or {}
            content += delta.content or ""
            reasoning += extra.get("reasoning_content") or ""
            blocks += extra.get("thinking_blocks") or []
            for tc in delta.tool_calls or []:
                slot = calls.setdefault(
                    tc.index,
                    {"id": None, "name": "", "arguments": "", "extra_content": None},
                )
                slot["id"] = tc.id or slot["id"]
                if tc.function is not None:
                    slot["name"] += tc.function.name or ""
                    slot["arguments"] += tc.function.arguments or ""
                given = (tc.model_extra or {}).get("extra_content")
                slot["extra_content"] = given or slot["extra_content"]
            finish = choice.finish_reason or finish
    return {
        "content": content or None,
        "reasoning_content": reasoning or None,
        "thinking_blocks": blocks,
        "tool_calls": [calls[i] for i in sorted(calls)],
        "finish_reason": finish,
        "usage": usage,
    }


def flatten(completion: Any) -> dict[str, Any]:
    """A non-streamed completion (first choice) in assemble()'s shape."""
    choice = completion.choices[0]
    msg = choice.message
    extra = msg.model_extra or {}
    return {
        "content": msg.content or None,
        "reasoning_content": extra.get("reasoning_content") or None,
        "thinking_blocks": extra.get("thinking_blocks") or [],
        "tool_calls": [
            {
                "id": tc.id,
                "name": tc.function.name,
                "arguments": tc.function.arguments,
                "extra_content": (tc.model_extra or {}).get("extra_content"),
            }
            for tc in msg.tool_calls or []
        ],
        "finish_reason": choice.finish_reason,
        "usage": completion.usage.model_dump() if completion.usage else None,
    }
