"""``StateManager``: the async state API every handler gets as ``ctx.state``.

The manager validates and encodes every input before the backend is touched (so bad input changes
nothing, on every backend alike), then decodes what comes back into fresh objects.
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from motia.exceptions import StateClosedError, StateValueError
from motia.state import values as _values
from motia.state.backends.base import StateBackend
from motia.state.backends.types import Record, StoreStats
from motia.state.observe import backend_kind, observed
from motia.state.ops import parse_operations
from motia.state.paging import read_page
from motia.state.transaction import StateTransaction, transact
from motia.state.typed import TypedScope
from motia.state.types import JSON, StateEntry, StateSetResult, stored_result
from motia.state.urls import open_backend

if TYPE_CHECKING:
    from pydantic import BaseModel

    ModelT = TypeVar("ModelT", bound=BaseModel)

_T = TypeVar("_T")
#: Bound once, not looked up per call: every set and update uses them (issue 15). ``_decode`` is how a write's
#: result decodes its values, on first access.
_decode = _values.decode
_encode_value = _values.encode_value
_MAX_SCOPE = _values.MAX_SCOPE_LENGTH
_MAX_KEY = _values.MAX_KEY_LENGTH


def _keyed(
    manager: StateManager, scope: object, key: object = None, *_: object, **__: object
) -> tuple[str, str, str | None]:
    """What an observer is told of a state operation: the backend's kind, the scope and the key (never
    the value)."""
    return backend_kind(manager.backend), str(scope), key if isinstance(key, str) else None


def _scoped(manager: StateManager, scope: object = "", *_: object, **__: object) -> tuple[str, str, None]:
    return backend_kind(manager.backend), str(scope), None


def _whole(manager: StateManager, *_: object, **__: object) -> tuple[str, str, None]:
    return backend_kind(manager.backend), "", None


class StateManager:
    """Scoped key-value state: scope → key → JSON value, persistent and atomic per call.

    Open one with :meth:`from_url` (``sqlite:///path.db``, ``memory://``, ``redis://host/db``) and close it with
    :meth:`aclose` or ``async with``. Every method may be called concurrently from any number of tasks.
    """

    def __init__(self, backend: StateBackend, *, max_value_bytes: int = _values.DEFAULT_MAX_VALUE_BYTES) -> None:
        if isinstance(max_value_bytes, bool) or not isinstance(max_value_bytes, int) or max_value_bytes <= 0:
            raise StateValueError(f"max_value_bytes must be a positive int, not {max_value_bytes!r}")
        self.backend = backend
        self.max_value_bytes = max_value_bytes
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> StateManager:
        """Open the store at ``url``; raise a :class:`~motia.exceptions.StateError` naming it if impossible.

        Options: ``max_value_bytes`` (default 1 MiB), ``clock`` (a zero-argument callable returning Unix
        time in seconds, for TTL; tests pass a fake one), and backend options (SQLite: ``durability``,
        ``timeout``; Redis: ``prefix``, ``timeout``). URL query parameters (``?durability=full``) are backend
        options too.
        """
        max_value_bytes = options.pop("max_value_bytes", _values.DEFAULT_MAX_VALUE_BYTES)
        return cls(open_backend(url, **options), max_value_bytes=max_value_bytes)

    @property
    def url(self) -> str:
        """The store's URL in normalised form (for SQLite, with the absolute path)."""
        return self.backend.url

    def __repr__(self) -> str:
        return f"<StateManager {self.url}{' closed' if self._closed else ''}>"

    def check_open(self) -> None:
        """Raise :class:`~motia.exceptions.StateClosedError` once the manager is closed (every method checks;
        layers that reach :attr:`backend` directly, such as typed scopes, call it first)."""
        if self._closed:
            raise StateClosedError(f"the state manager for {self.url} is closed")

    # -- Motia's API ------------------------------------------------------------------------------

    @observed("state", "get", _keyed)
    async def get(self, scope: str, key: str) -> JSON:
        """The value stored at ``(scope, key)``, or ``None`` if there is none."""
        self.check_open()
        record = await self.backend.get(_values.check_scope(scope), _values.check_key(key))
        return None if record is None else _values.decode(record.data)

    @observed("state", "set", _keyed)
    async def set(
        self, scope: str, key: str, value: Any, *, ttl: float | None = None, if_version: int | None = None
    ) -> StateSetResult:
        """Store ``value``, replacing any old one.

        ``ttl`` (seconds) gives the key an expiry; without it the key is permanent. ``if_version``
        writes only if the stored version equals it (0: only if absent), else raises
        :class:`~motia.exceptions.StateConflictError`.
        """
        if self._closed:
            self.check_open()
        # Plain ASCII names within the limits pass this one inline test (what check_name accepts without
        # further ado); anything else takes the full checks, which accept or name the error as before.
        if not (
            type(scope) is str
            and type(key) is str
            and 0 < len(scope) <= _MAX_SCOPE
            and 0 < len(key) <= _MAX_KEY
            and scope.isascii()
            and key.isascii()
        ):
            scope, key = _values.check_scope(scope), _values.check_key(key)
        data = _encode_value(value, self.max_value_bytes)
        if ttl is not None or if_version is not None:  # the common write has neither: no calls to check them
            ttl, if_version = _values.check_ttl(ttl), _values.check_version(if_version)
        return stored_result(await self.backend.set(scope, key, data, ttl=ttl, if_version=if_version), _decode)

    @observed("state", "update", _keyed)
    async def update(
        self,
        scope: str,
        key: str,
        ops: builtins.list[dict[str, Any]],
        *,
        ttl: float | None = None,
        if_version: int | None = None,
    ) -> StateSetResult:
        """Apply update operations atomically: all or none, no lost update under any concurrency.

        A missing key starts as ``{}``. ``ttl`` sets a new expiry; without it the current one is kept.
        An empty ``ops`` writes nothing.
        """
        if self._closed:
            self.check_open()
        if not (  # as in set
            type(scope) is str
            and type(key) is str
            and 0 < len(scope) <= _MAX_SCOPE
            and 0 < len(key) <= _MAX_KEY
            and scope.isascii()
            and key.isascii()
        ):
            scope, key = _values.check_scope(scope), _values.check_key(key)
        operations = parse_operations(ops)
        if ttl is not None or if_version is not None:
            ttl, if_version = _values.check_ttl(ttl), _values.check_version(if_version)
        return stored_result(
            await self.backend.update(
                scope, key, operations, ttl=ttl, if_version=if_version, max_value_bytes=self.max_value_bytes
            ),
            _decode,
        )

    @observed("state", "delete", _keyed)
    async def delete(self, scope: str, key: str, *, if_version: int | None = None) -> JSON:
        """Remove the key; return its previous value, or ``None`` (changing nothing) if it was absent."""
        self.check_open()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        data = await self.backend.delete(scope, key, if_version=_values.check_version(if_version))
        return None if data is None else _values.decode(data)

    @observed("state", "list", _scoped)
    async def list(self, scope: str) -> builtins.list[JSON]:
        """Every value of ``scope``, ordered by key; ``[]`` for an unknown scope."""
        self.check_open()
        return [_values.decode(data) for data in await self.backend.values(_values.check_scope(scope))]

    @observed("state", "clear", _scoped)
    async def clear(self, scope: str) -> None:
        """Remove every key of ``scope`` in one atomic step."""
        self.check_open()
        await self.backend.clear(_values.check_scope(scope))

    @observed("state", "list_groups", _whole)
    async def list_groups(self) -> builtins.list[str]:
        """Sorted scopes that hold at least one key; the runtime's own (``__motia.``, e.g. idempotency
        records) are left out, so listings, the console and ``motia state`` show the user's data only."""
        self.check_open()
        return [s for s in await self.backend.scopes() if not s.startswith(_values.INTERNAL_SCOPE_PREFIX)]

    # -- Motia 0.x names ---------------------------------------------------------------------------

    async def get_group(self, scope: str) -> builtins.list[JSON]:
        """Motia 0.x's name for :meth:`list` (``context.state.get_group(group_id)``): the scope's values."""
        return await self.list(scope)

    async def trace_ids(self) -> builtins.list[str]:
        """Motia 0.x's name for :meth:`list_groups` (its scopes were often trace ids)."""
        return await self.list_groups()

    # -- beyond Motia -----------------------------------------------------------------------------

    @observed("state", "get_entry", _keyed)
    async def get_entry(self, scope: str, key: str) -> StateEntry | None:
        """The key with its value, version and expiry, or ``None``."""
        self.check_open()
        record = await self.backend.get(_values.check_scope(scope), _values.check_key(key))
        return None if record is None else _entry(record)

    @observed("state", "items", _scoped)
    async def items(
        self, scope: str, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> builtins.list[StateEntry]:
        """A page of entries in key order: keys starting with ``prefix``, strictly greater than ``after``.

        Pass the last key of a page as ``after`` to get the next one. Costs the page, not the scope.
        """
        return [_entry(record) for record in await self._page(scope, prefix, after, limit)]

    @observed("state", "keys", _scoped)
    async def keys(
        self, scope: str, *, prefix: str | None = None, after: str | None = None, limit: int | None = None
    ) -> builtins.list[str]:
        """Like :meth:`items`, keys only."""
        return [record.key for record in await self._page(scope, prefix, after, limit)]

    async def _page(self, scope: str, prefix: object, after: object, limit: object) -> builtins.list[Record]:
        self.check_open()
        return await read_page(self.backend, scope, prefix, after, limit)

    @observed("state", "count", _scoped)
    async def count(self, scope: str) -> int:
        """The number of keys in ``scope``."""
        self.check_open()
        return await self.backend.count(_values.check_scope(scope))

    # -- several keys at once -----------------------------------------------------------------------

    def transaction(self) -> StateTransaction:
        """``async with state.transaction() as tx:`` reads and writes that commit together or not at all.

        Optimistic: a key it read that changed before the commit raises ``StateConflictError`` and
        writes nothing; :meth:`transact` retries instead.
        """
        self.check_open()
        return StateTransaction(self)

    @observed("state", "transact", _whole)
    async def transact(self, function: Callable[[StateTransaction], Awaitable[_T]], *, retries: int = 5) -> _T:
        """Run ``await function(tx)`` in a transaction and commit, re-running it on a conflict."""
        self.check_open()
        return await transact(self, function, retries=retries)

    def scope(self, scope: str, model: type[ModelT]) -> TypedScope[ModelT]:
        """The scope bound to a pydantic ``model``: validated writes, model instances back."""
        return TypedScope(self, _values.check_scope(scope), model)

    @observed("state", "get_many", _scoped)
    async def get_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """The values of the ``keys`` that exist, read as one consistent snapshot."""
        wanted = list(dict.fromkeys(keys))

        async def read(transaction: StateTransaction) -> dict[str, JSON]:
            entries = {key: await transaction.get_entry(scope, key) for key in wanted}
            return {key: entry.value for key, entry in entries.items() if entry is not None}

        return await self.transact(read)

    @observed("state", "set_many", _scoped)
    async def set_many(
        self, scope: str, values: Mapping[str, Any], *, ttl: float | None = None
    ) -> dict[str, StateSetResult]:
        """Set several keys of ``scope`` atomically: all or none."""

        async def write(transaction: StateTransaction) -> dict[str, StateSetResult]:
            return {key: await transaction.set(scope, key, value, ttl=ttl) for key, value in values.items()}

        return await self.transact(write)

    @observed("state", "delete_many", _scoped)
    async def delete_many(self, scope: str, keys: Iterable[str]) -> dict[str, JSON]:
        """Delete several keys atomically; return the previous values of those that existed."""
        wanted = list(dict.fromkeys(keys))

        async def remove(transaction: StateTransaction) -> dict[str, JSON]:
            removed: dict[str, JSON] = {}
            for key in wanted:
                if await transaction.get_entry(scope, key) is not None:  # a stored null counts
                    removed[key] = await transaction.delete(scope, key)
            return removed

        return await self.transact(remove)

    async def restore(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        version: int | None = None,
        expires_at: float | None = None,
        replace: bool = False,
    ) -> bool:
        """Write a key moved from another store as it was there: its ``version`` and absolute
        ``expires_at`` (Unix seconds) are kept, so an export/import round trip changes nothing.

        Without ``replace`` an existing key is left alone and ``False`` returned. For moving data
        (``motia state import``), not for application writes: it skips ``if_version`` checks.
        """
        self.check_open()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        data = _values.encode_value(value, self.max_value_bytes)
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise StateValueError(f"version must be a positive int or None, not {version!r}")
        if expires_at is not None and (
            isinstance(expires_at, bool) or not isinstance(expires_at, int | float) or not math.isfinite(expires_at)
        ):
            raise StateValueError(f"expires_at must be a finite Unix time in seconds or None, not {expires_at!r}")
        return await self.backend.restore(
            scope,
            key,
            data,
            version=version,
            expires_at=None if expires_at is None else float(expires_at),
            replace=replace,
        )

    async def purge_expired(self) -> int:
        """Remove expired keys now (they are already invisible); return how many were removed."""
        self.check_open()
        return await self.backend.purge_expired()

    async def stats(self) -> StoreStats:
        """What the store holds and the space it takes, the runtime's own scopes included; reads only
        (see :meth:`StateBackend.stats <motia.state.backends.base.StateBackend.stats>`)."""
        self.check_open()
        return await self.backend.stats()

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Wait for pending writes, then close the store. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.backend.aclose()

    async def __aenter__(self) -> StateManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _entry(record: Record) -> StateEntry:
    return StateEntry(record.key, _values.decode(record.data), record.version, record.expires_at)
