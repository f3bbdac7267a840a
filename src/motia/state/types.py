"""Value types returned by the state API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

#: A JSON value as stored and returned: dict (str keys), list, str, int, float, bool or None.
JSON: TypeAlias = Any

#: One update operation, e.g. ``{"type": "increment", "path": "count", "value": 1}``.
UpdateOp: TypeAlias = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StateSetResult:
    """The outcome of ``set``/``update``: the value before (``None`` if the key was new) and after.

    Item access (``result["old_value"]``) works too, for code written against Motia's dict result.
    ``version`` is the key's version after the write.
    """

    old_value: JSON
    new_value: JSON
    version: int = 0

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


@dataclass(frozen=True, slots=True)
class StateEntry:
    """One stored key: its value, its version (1 on creation, +1 per write) and its expiry.

    ``expires_at`` is a Unix timestamp in seconds, or ``None`` for a permanent key.
    """

    key: str
    value: JSON
    version: int
    expires_at: float | None = None
