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

    __slots__ = ("_old", "_new", "version", "_decode")

    def __init__(
        self,
        old_value: JSON = None,
        new_value: JSON = None,
        version: int = 0,
        *,
        _encoded: tuple[bytes | None, bytes | None, Callable[[bytes], JSON]] | None = None,
    ) -> None:
        self.version = version
        if _encoded is None:
            self._old, self._new, self._decode = old_value, new_value, None
        else:
            self._old, self._new, self._decode = _encoded

    def _materialise(self) -> None:
        decode = self._decode
        if decode is not None:
            self._decode = None
            self._old = None if self._old is None else decode(self._old)
            self._new = None if self._new is None else decode(self._new)

    @property
    def old_value(self) -> JSON:
        self._materialise()
        return self._old

    @property
    def new_value(self) -> JSON:
        self._materialise()
        return self._new

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


def stored_result(
    version: int, old_data: bytes | None, new_data: bytes | None, decode: Callable[[bytes], JSON]
) -> StateSetResult:
    """The result of a write from its stored values, decoded by ``decode`` on first access: what
    ``StateSetResult(version=version, _encoded=(old_data, new_data, decode))`` makes, without the keyword call
    and the ``__init__`` frame (every ``set`` and ``update`` makes one; issue 15)."""
    result: StateSetResult = _new_object(StateSetResult)
    result.version = version
    result._old = old_data
    result._new = new_data
    result._decode = decode
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
