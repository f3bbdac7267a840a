"""Value types returned by the state API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

#: A JSON value as stored and returned: dict (str keys), list, str, int, float, bool or None.
JSON: TypeAlias = Any

#: One update operation, e.g. ``{"type": "increment", "path": "count", "value": 1}``.
UpdateOp: TypeAlias = dict[str, Any]


class StateSetResult:
    """The outcome of ``set``/``update``: the value before (``None`` if the key was new) and after.

    Item access (``result["old_value"]``) works too, for code written against Motia's dict result.
    ``version`` is the key's version after the write. The values are decoded from the stored JSON on
    first access (most callers never look), each access returning the same fresh object.
    """

    # ``_written``: what the backend answered, ``(old_data, new_data, version)``, kept as it came (a result is
    # made by every set and update: two slots stored instead of four, issue 15). ``_values``: ``(old, new)`` once
    # decoded, or given; until then the function that decodes them (the caller's: this module sits below the one
    # that encodes and decodes values).
    __slots__ = ("_written", "_values")

    _written: tuple[bytes | None, bytes | None, int]
    _values: tuple[JSON, JSON] | Callable[[bytes], JSON]

    def __init__(
        self,
        old_value: JSON = None,
        new_value: JSON = None,
        version: int = 0,
        *,
        _encoded: tuple[bytes | None, bytes | None, Callable[[bytes], JSON]] | None = None,
    ) -> None:
        if _encoded is None:
            self._written = (None, None, version)
            self._values = (old_value, new_value)
        else:
            self._written = (_encoded[0], _encoded[1], version)
            self._values = _encoded[2]

    @property
    def version(self) -> int:
        return self._written[2]

    def _decoded(self) -> tuple[JSON, JSON]:
        values = self._values
        if type(values) is tuple:
            return values
        old, new, _ = self._written
        decoded = self._values = (None if old is None else values(old), None if new is None else values(new))  # type: ignore[operator]
        return decoded

    @property
    def old_value(self) -> JSON:
        return self._decoded()[0]

    @property
    def new_value(self) -> JSON:
        return self._decoded()[1]

    def __getitem__(self, name: str) -> JSON:
        if name in ("old_value", "new_value", "version"):
            return getattr(self, name)
        raise KeyError(name)

    def get(self, name: str, default: JSON = None) -> JSON:
        try:
            return self[name]
        except KeyError:
            return default

    def keys(self) -> tuple[str, ...]:
        return ("old_value", "new_value", "version")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateSetResult):
            return NotImplemented
        return (self.old_value, self.new_value, self.version) == (other.old_value, other.new_value, other.version)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"StateSetResult(old_value={self.old_value!r}, new_value={self.new_value!r}, version={self.version})"


_new_object = object.__new__


def stored_result(written: tuple[bytes | None, bytes | None, int], decode: Callable[[bytes], JSON]) -> StateSetResult:
    """The result of a write from what the backend answered, ``(old_data, new_data, version)`` (a
    :class:`~motia.state.backends.types.WriteResult`), decoded by ``decode`` on first access: what
    ``StateSetResult(version=..., _encoded=...)`` makes, without the keyword call, the ``__init__`` frame and the
    tuple taken apart (every ``set`` and ``update`` makes one; issue 15)."""
    result: StateSetResult = _new_object(StateSetResult)
    result._written = written
    result._values = decode
    return result


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One stored key: its value, its version (1 on creation, +1 per write) and its expiry.

    ``expires_at`` is a Unix timestamp in seconds, or ``None`` for a permanent key.
    """

    key: str
    value: JSON
    version: int
    expires_at: float | None = None
