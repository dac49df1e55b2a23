"""An upstream's JSON answer that is also the client's: kept with its bytes.

A pass-through provider (openai, azure, ollama, any OpenAI-compatible server)
answers in the client's own format, so the gateway parses the answer only to
read it (usage, the cache, the log) and sends the provider's bytes on as they
came: parsing and re-serialising a 1536-float embedding cost ~145 us, half of
it the serialising. Nothing in the gateway edits a pass-through answer
(translating providers build new objects); an edit through the dict's own
methods drops the bytes, so the edited object is serialised instead.
"""

from __future__ import annotations

from typing import Any


class Verbatim(dict[str, Any]):
    """A parsed JSON object and `raw`, the bytes it was parsed from (None once
    the object was changed through its own methods)."""

    __slots__ = ("raw",)

    def __init__(self, parsed: dict[str, Any], raw: bytes) -> None:
        super().__init__(parsed)
        self.raw: bytes | None = raw

    def _changed(self) -> None:
        self.raw = None

    def __setitem__(self, key: str, value: Any) -> None:
        self._changed()
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._changed()
        super().__delitem__(key)

    def __ior__(self, other: Any) -> Verbatim:  # type: ignore[override,misc]
        self._changed()
        return super().__ior__(other)  # type: ignore[return-value]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._changed()
        super().update(*args, **kwargs)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._changed()
        return super().setdefault(key, default)

    def pop(self, *args: Any) -> Any:
        self._changed()
        return super().pop(*args)

    def popitem(self) -> tuple[str, Any]:
        self._changed()
        return super().popitem()

    def clear(self) -> None:
        self._changed()
        super().clear()


def raw_json(obj: Any) -> bytes | None:
    """The bytes to send for `obj` as they came, if it is an unchanged answer."""
    return obj.raw if type(obj) is Verbatim else None
