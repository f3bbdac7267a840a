"""The buffered writes of one batch, on one connection, inside one ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from motia.state.backends._writes import _tuple
from motia.state.backends.sqlite.connection import blob
from motia.state.backends.sqlite.outbox import Event, Subscribers, record
from motia.state.backends.types import Record

_SELECT_ONE = "SELECT value, version, expires_at FROM motia_state WHERE scope = ? AND key = ?"
_UPSERT = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " value = excluded.value, version = excluded.version, expires_at = excluded.expires_at"
)
#: :data:`_UPSERT` for a row without an expiry: ``NULL`` written in, not bound (see
#: :func:`~motia.state.backends.sqlite.connection.blob`).
_UPSERT_LASTING = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES (?, ?, ?, ?, NULL)"
    " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = NULL"
)
_DELETE = "DELETE FROM motia_state WHERE scope = ? AND key = ?"

_UNSEEN: Any = object()
#: Marks an undo-log entry for a flush: the buffers as they were before it.
_FLUSHED: Any = object()


class _Transaction:
    """The writes of one batch, on one connection, inside one ``BEGIN IMMEDIATE``.

    Rows are read once (a batch prefetches its keys with one query per scope), changed in Python and
    written back at commit with ``executemany``: a group of writes costs little more than one.

    Each call of a batch can be undone on its own (:meth:`begin_call` … :meth:`undo_call`): while a call
    runs, every change to the buffers is logged, so a call that raises leaves them as they were before it,
    and the other calls of the batch still commit. (Statements a call executes itself are undone by a
    ``SAVEPOINT``, see :meth:`SQLiteBackend._run_call`.)
    """

    __slots__ = (
        "connection",
        "now",
        "record_events",
        "trace",
        "notify",
        "streamed",
        "subscribers",
        "_known",
        "_dirty",
        "_events",
        "_undo",
        "_mark",
    )

    def __init__(
        self, connection: sqlite3.Connection, now: float, record_events: bool, subscribers: Subscribers | None = None
    ) -> None:
        self.connection = connection
        self.now = now
        self.record_events = record_events
        #: The ``traceparent`` of the call running now (its caller's, captured when it was queued): the
        #: events it records carry it.
        self.trace: str | None = None
        #: Whether local workers should be woken after the commit (events or deliveries changed).
        self.notify = False
        #: Whether a stream change was recorded: stream tails and listeners are woken after the commit.
        self.streamed = False
        #: The backend's copy of the registered subscriptions (see :mod:`~motia.state.backends.sqlite.outbox`).
        self.subscribers = subscribers if subscribers is not None else Subscribers()
        #: The live record of every key this transaction has looked at (``None``: absent), as of now.
        self._known: dict[tuple[str, str], Record | None] = {}
        #: What to write at commit: the final record of each changed key (``None``: delete the row).
        self._dirty: dict[tuple[str, str], Record | None] = {}
        self._events: list[Event] = []
        #: While a call runs: how to undo each change it made to the buffers, in order.
        self._undo: list[tuple[Any, ...]] | None = None
        #: ``len(self._events)`` when the running call began.
        self._mark = 0

    def begin_call(self) -> None:
        """Start logging changes, so that :meth:`undo_call` can take back everything the next call does."""
        self._undo = []
        self._mark = len(self._events)

    def end_call(self) -> None:
        """The call succeeded: keep its changes."""
        self._undo = None

    def undo_call(self) -> None:
        """Take back every buffered change of the call that began last (it raised)."""
        undo, self._undo = self._undo, None
        assert undo is not None
        for entry in reversed(undo):
            if entry[0] is _FLUSHED:  # the statements were rolled back: buffer those writes again
                self._dirty, self._events = entry[1], entry[2]
            else:
                table, pair, old = entry
                if old is _UNSEEN:
                    table.pop(pair, None)
                else:
                    table[pair] = old
        del self._events[self._mark :]

    def _set(self, table: dict[tuple[str, str], Record | None], pair: tuple[str, str], record: Record | None) -> None:
        if self._undo is not None:
            self._undo.append((table, pair, table.get(pair, _UNSEEN)))
        table[pair] = record

    def prefetch(self, scope: str, keys: Sequence[str]) -> None:
        missing = list(dict.fromkeys(key for key in keys if (scope, key) not in self._known))
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f"SELECT key, value, version, expires_at FROM motia_state WHERE scope = ? AND key IN ({marks})",
                (scope, *chunk),
            ).fetchall()
            found = {row[0]: row[1:] for row in rows}
            for key in chunk:
                self._admit(scope, key, found.get(key))

    def load(self, scope: str, key: str) -> Record | None:
        """The live record, or ``None``; an expired row is removed now (firing ``expired``)."""
        known = self._known.get((scope, key), _UNSEEN)
        if known is _UNSEEN:
            return self._admit(scope, key, self.connection.execute(_SELECT_ONE, (scope, key)).fetchone())
        return known  # type: ignore[no-any-return]

    def _admit(self, scope: str, key: str, row: tuple[bytes, int, float | None] | None) -> Record | None:
        record = None
        pair = (scope, key)
        if row is not None:
            data, version, expires_at = row
            if expires_at is not None and expires_at <= self.now:
                self._set(self._dirty, pair, None)
                self.event("expired", scope, key, data, None, version)
            else:
                record = _tuple(Record, (key, data, version, expires_at))
        # _set, spelled out: every key a batch reads comes here (issue 15)
        known = self._known
        if self._undo is not None:
            self._undo.append((known, pair, known.get(pair, _UNSEEN)))
        known[pair] = record
        return record

    def store(self, scope: str, record: Record, old_data: bytes | None) -> None:
        # _set twice and event, spelled out: every buffered write comes here (issue 15)
        pair = (scope, record.key)
        known = self._known
        dirty = self._dirty
        undo = self._undo
        if undo is not None:
            undo.append((known, pair, known.get(pair, _UNSEEN)))
            undo.append((dirty, pair, dirty.get(pair, _UNSEEN)))
        known[pair] = dirty[pair] = record
        if self.record_events:
            self._events.append(
                (
                    "created" if old_data is None else "updated",
                    scope,
                    record.key,
                    old_data,
                    record.data,
                    record.version,
                    self.now,
                    self.trace,
                )
            )

    def remove(self, scope: str, current: Record) -> None:
        self._set(self._known, (scope, current.key), None)
        self._set(self._dirty, (scope, current.key), None)
        self.event("deleted", scope, current.key, current.data, None, current.version)

    def event(self, event_type: str, scope: str, key: str, old: bytes | None, new: bytes | None, version: int) -> None:
        if self.record_events:
            self._events.append((event_type, scope, key, old, new, version, self.now, self.trace))

    def write_events(self, events: list[Event]) -> None:
        """Record ``events`` now, in this transaction: as deliveries, or in the outbox (see
        :func:`~motia.state.backends.sqlite.outbox.record`)."""
        if record(self.connection, self.subscribers, events, self.now):
            self.notify = True

    def forget_scope(self, scope: str) -> None:
        """Every key of ``scope`` is gone (after a clear)."""
        for pair in [pair for pair in self._known if pair[0] == scope]:
            self._set(self._known, pair, None)

    def flush(self) -> None:
        """Write the changed rows and the events (before COMMIT, or before a statement that reads rows):
        the events as the deliveries of the subscriptions registered now, or to the outbox."""
        if self._undo is not None and (self._dirty or self._events):
            # Both buffers are swapped out below, not changed: keeping them is enough to restore them.
            self._undo.append((_FLUSHED, self._dirty, self._events))
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            # Values bound as bytearray and NULL expiries written in the SQL: sqlite3 sends each bytes or None
            # parameter through its adapter look-up, ~3,000 instructions each (connection.blob; issue 15)
            lasting: list[tuple[str, str, bytearray, int]] = []
            expiring: list[tuple[str, str, bytearray, int, float]] = []
            deletes: list[tuple[str, str]] = []
            for (scope, key), record in dirty.items():
                if record is None:
                    deletes.append((scope, key))
                elif record.expires_at is None:
                    lasting.append((scope, key, blob(record.data), record.version))
                else:
                    expiring.append((scope, key, blob(record.data), record.version, record.expires_at))
            connection = self.connection
            if len(lasting) == 1:  # the common single write: execute is cheaper than executemany
                connection.execute(_UPSERT_LASTING, lasting[0])
            elif lasting:
                connection.executemany(_UPSERT_LASTING, lasting)
            if len(expiring) == 1:
                connection.execute(_UPSERT, expiring[0])
            elif expiring:
                connection.executemany(_UPSERT, expiring)
            if deletes:
                connection.executemany(_DELETE, deletes)
        if self._events:
            events, self._events = self._events, []
            self.write_events(events)
