"""Lenient readers of JSON values from upstreams that only claim OpenAI
compatibility: an odd shape reads as empty, never a crash. Pure.
"""

from __future__ import annotations

from typing import Any

import orjson


def _dict(value: Any) -> dict[str, Any]:
    # Upstreams that only claim OpenAI compatibility send odd shapes; never crash.
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    """A token count: a non-negative int, else 0."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if not raw:
        return {}
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return parsed if isinstance(parsed, dict) else {"_value": parsed}
