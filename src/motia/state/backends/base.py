"""The contract every state backend implements.

The :class:`~motia.state.manager.StateManager` validates and encodes everything before a backend sees
it: scopes and keys are valid ``str``, values are encoded JSON ``bytes`` within the size limit, update
operations are parsed (:mod:`motia.state.ops`), ``ttl`` is a positive float or ``None``, ``if_version``
a non-negative int or ``None``. Backends store, return encoded ``bytes`` and never decode for the caller.

Guarantees every backend gives:

- Every write (``set``, ``update``, ``delete``, ``clear``) is atomic and isolated: concurrent writers
  (tasks, threads, processes, machines) never lose an update; ``update`` reads, applies and writes in
  one atomic step; ``clear`` removes the whole scope in one.
- A write is acknowledged (its coroutine returns) only once it is durable to the backend's promise.
- Keys are ordered by code point (``str`` order, equal to UTF-8 byte order) everywhere.
- Expired keys are absent to every read and every write from the instant they expire.
- Versions start at 1 on creation and increase by 1 per write; an absent key has version 0.
- Methods may be awaited from any event loop in any thread (the synchronous twin runs them on a
  private loop), concurrently.
- Driver errors are translated to :class:`~motia.exceptions.StateBackendError` subclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from motia.state.ops import Operation


class Record(NamedTuple):
    """A stored key as the backend returns it: the value still encoded."""

    key: str
    data: bytes
    version: int
    expires_at: float | None


class WriteResult(NamedTuple):
    """The outcome of ``set``/``update``: encoded values before (``None`` if absent) and after."""

    old_data: bytes | None
    new_data: bytes | None
    version: int


class StateBackend:
    """Base class of the backends. Subclasses implement every method below."""

    #: The backend's URL in normalised form (for SQLite, with the absolute path).
    url: str

    async def get(self, scope: str, key: str) -> Record | None:
        """Return the live record of ``(scope, key)``, or ``None`` when absent or expired."""
        raise NotImplementedError  # pragma: no cover

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        """Store ``data``; ``ttl`` gives an expiry, ``None`` makes the key permanent.

        Raises :class:`~motia.exceptions.StateConflictError` (writing nothing) when ``if_version`` is
        given and differs from the stored version (0 when absent).
        """
        raise NotImplementedError  # pragma: no cover

    async def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> WriteResult:
        """Apply ``operations`` atomically to the stored value (``{}`` when absent).

        ``ttl=None`` keeps the current expiry. An empty ``operations`` writes nothing and returns the
        current value twice (``WriteResult(None, None, 0)`` for an absent key). Raises
        :class:`~motia.exceptions.InvalidUpdateError`, :class:`~motia.exceptions.StateValueError` (the
        result is over ``max_value_bytes``) or :class:`~motia.exceptions.StateConflictError`, writing
        nothing.
        """
        raise NotImplementedError  # pragma: no cover

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        """Remove the key; return its encoded value, or ``None`` (and change nothing) when absent."""
        raise NotImplementedError  # pragma: no cover

    async def clear(self, scope: str) -> int:
        """Remove every key of ``scope`` in one atomic step; return how many live keys were removed."""
        raise NotImplementedError  # pragma: no cover

    async def values(self, scope: str) -> list[bytes]:
        """Every live value of ``scope``, in key order."""
        raise NotImplementedError  # pragma: no cover

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        """Live records of ``scope`` in key order with keys ``> after`` that start with ``prefix``.

        Costs in proportion to the page returned, not to the size of the scope.
        """
        raise NotImplementedError  # pragma: no cover

    async def count(self, scope: str) -> int:
        """The number of live keys in ``scope``."""
        raise NotImplementedError  # pragma: no cover

    async def scopes(self) -> list[str]:
        """Sorted scopes holding at least one live key."""
        raise NotImplementedError  # pragma: no cover

    async def purge_expired(self) -> int:
        """Remove expired keys now; return how many were removed."""
        raise NotImplementedError  # pragma: no cover

    async def aclose(self) -> None:
        """Finish pending writes and release every resource. Idempotent."""
        raise NotImplementedError  # pragma: no cover
