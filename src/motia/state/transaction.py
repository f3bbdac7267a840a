"""Multi-key transactions: several reads and writes, over any keys and scopes, committed together or not
at all.

Optimistic on every backend: a transaction reads through the store, remembering each key's version,
and keeps its writes to itself; ``commit`` is one atomic backend call that checks every version it saw
and applies every write, or raises :class:`~motia.exceptions.StateConflictError` and changes nothing.
It never holds a store lock while user code runs (on SQLite a pessimistic ``BEGIN IMMEDIATE`` spanning
a handler's awaits would stall every writer of every process), at the price of conflicts that
:meth:`StateManager.transact` retries.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from motia.exceptions import StateConflictError, StateError
from motia.state import values as _values
from motia.state.backends.types import Record, TransactionWrite
from motia.state.ops import apply_operations, parse_operations
from motia.state.types import JSON, StateEntry, StateSetResult

if TYPE_CHECKING:
    from motia.state.manager import StateManager

_T = TypeVar("_T")


class _Pending:
    """A transaction's own write of one key: the value (``None``: deleted) and how its expiry is set."""

    __slots__ = ("data", "ttl", "keep_expiry")

    def __init__(self, data: bytes | None, ttl: float | None, keep_expiry: bool) -> None:
        self.data, self.ttl, self.keep_expiry = data, ttl, keep_expiry


class StateTransaction:
    """Reads and writes that commit together; use ``async with state.transaction() as tx``.

    Reads see the transaction's own writes. Leaving the block normally commits; an exception discards
    every write. Each key changed fires one change event, at commit, for its final value.
    """

    def __init__(self, manager: StateManager) -> None:
        self._manager = manager
        self._read: dict[tuple[str, str], Record | None] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}
        self._finished = False

    def _check(self) -> None:
        if self._finished:
            raise StateError("this transaction has already committed or rolled back")

    async def _record(self, scope: str, key: str) -> Record | None:
        pair = (scope, key)
        if pair not in self._read:
            self._read[pair] = await self._manager.backend.get(scope, key)
        return self._read[pair]

    async def _current(self, scope: str, key: str) -> bytes | None:
        record = await self._record(scope, key)
        pending = self._pending.get((scope, key))
        if pending is not None:
            return pending.data
        return None if record is None else record.data

    async def get(self, scope: str, key: str) -> JSON:
        self._check()
        data = await self._current(_values.check_scope(scope), _values.check_key(key))
        return None if data is None else _values.decode(data)

    async def get_entry(self, scope: str, key: str) -> StateEntry | None:
        """The entry as it will be after commit (version and expiry of a written key are predicted)."""
        self._check()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        record = await self._record(scope, key)
        pending = self._pending.get((scope, key))
        if pending is None:
            return (
                None
                if record is None
                else StateEntry(key, _values.decode(record.data), record.version, record.expires_at)
            )
        if pending.data is None:
            return None
        version = (record.version if record is not None else 0) + 1
        if pending.ttl is not None:
            expires_at: float | None = time.time() + pending.ttl
        else:
            expires_at = record.expires_at if pending.keep_expiry and record is not None else None
        return StateEntry(key, _values.decode(pending.data), version, expires_at)

    def _version_after(self, scope: str, key: str) -> int:
        record = self._read.get((scope, key))
        return (record.version if record is not None else 0) + 1

    async def set(self, scope: str, key: str, value: Any, *, ttl: float | None = None) -> StateSetResult:
        self._check()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        data = _values.encode_value(value, self._manager.max_value_bytes)
        checked_ttl = _values.check_ttl(ttl)
        old = await self._current(scope, key)
        self._pending[scope, key] = _Pending(data, checked_ttl, keep_expiry=False)
        return StateSetResult(version=self._version_after(scope, key), _encoded=(old, data, _values.decode))

    async def update(
        self, scope: str, key: str, ops: builtins.list[dict[str, Any]], *, ttl: float | None = None
    ) -> StateSetResult:
        self._check()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        operations = parse_operations(ops)
        checked_ttl = _values.check_ttl(ttl)
        old = await self._current(scope, key)
        if not operations:
            return StateSetResult(version=0, _encoded=(old, old, _values.decode))
        document = apply_operations({} if old is None else _values.decode(old), operations)
        data = _values.encode(document, self._manager.max_value_bytes)
        previous = self._pending.get((scope, key))
        if checked_ttl is not None:
            pending = _Pending(data, checked_ttl, keep_expiry=False)
        elif previous is not None and previous.data is not None:  # keep what this transaction set
            pending = _Pending(data, previous.ttl, previous.keep_expiry)
        else:
            pending = _Pending(data, None, keep_expiry=True)
        self._pending[scope, key] = pending
        return StateSetResult(version=self._version_after(scope, key), _encoded=(old, data, _values.decode))

    async def delete(self, scope: str, key: str) -> JSON:
        self._check()
        scope, key = _values.check_scope(scope), _values.check_key(key)
        old = await self._current(scope, key)
        if old is not None:
            self._pending[scope, key] = _Pending(None, None, keep_expiry=False)
        return None if old is None else _values.decode(old)

    async def commit(self) -> None:
        """Apply every write if every key read is unchanged since; else raise ``StateConflictError``."""
        self._check()
        self._finished = True
        expected = {pair: (record.version if record is not None else 0) for pair, record in self._read.items()}
        writes = [
            TransactionWrite(scope, key, pending.data, pending.ttl, pending.keep_expiry)
            for (scope, key), pending in self._pending.items()
        ]
        await self._manager.backend.commit(expected, writes)

    def rollback(self) -> None:
        """Discard every write (nothing was written yet)."""
        self._finished = True
        self._pending.clear()

    async def __aenter__(self) -> StateTransaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.rollback()
        elif not self._finished:
            await self.commit()


async def transact(
    manager: StateManager, function: Callable[[StateTransaction], Awaitable[_T]], *, retries: int = 5
) -> _T:
    """Run ``function(tx)`` and commit; on a conflict run it again on fresh reads, up to ``retries`` times."""
    attempt = 0
    while True:
        transaction = StateTransaction(manager)
        try:
            result = await function(transaction)
            if not transaction._finished:
                await transaction.commit()
            return result
        except StateConflictError:
            attempt += 1
            if attempt > retries:
                raise
        except BaseException:
            transaction.rollback()
            raise
