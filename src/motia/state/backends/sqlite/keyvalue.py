"""The key-value writes, each run inside a batch's transaction: ``function(transaction, *args)``.

Each reads the rows it needs through the :class:`~motia.state.backends.sqlite.transaction._Transaction`,
plans the write with the shared rules (:mod:`motia.state.backends._writes`) and buffers the result; the
SQL fragments the reads share live here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from motia.state.backends._writes import (
    _tuple,
    check_version,
    plan_restore,
    plan_set,
    plan_transaction_write,
    plan_update,
)
from motia.state.backends.sqlite.connection import HookedConnection, Row, blob
from motia.state.backends.sqlite.outbox import Event
from motia.state.backends.sqlite.recorded import FALLBACK as FALLBACK
from motia.state.backends.sqlite.recorded import recorded_delete, recorded_set, recorded_update
from motia.state.backends.sqlite.transaction import _DELETE, _SELECT_ONE, _Transaction
from motia.state.backends.types import Record, TransactionWrite, WriteResult
from motia.state.ops import Operation, apply_operations
from motia.state.values import decode, encode

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_SCOPES = f"""
    WITH RECURSIVE scopes(scope) AS (
        SELECT min(scope) FROM motia_state
        UNION ALL
        SELECT (SELECT min(scope) FROM motia_state WHERE scope > scopes.scope) FROM scopes
        WHERE scopes.scope IS NOT NULL
    )
    SELECT scope FROM scopes WHERE scope IS NOT NULL AND EXISTS (
        SELECT 1 FROM motia_state WHERE motia_state.scope = scopes.scope AND {_LIVE}
    )"""

#: A clear recording events writes them in chunks of at most this many rows or (about) bytes of values.
CLEAR_CHUNK_ROWS = 500
CLEAR_CHUNK_BYTES = 1 << 20


def _write_set(
    tx: _Transaction, scope: str, key: str, data: bytes, ttl: float | None, if_version: int | None
) -> WriteResult:
    record, result = plan_set(scope, key, tx.load(scope, key), data, ttl, if_version, tx.now)
    tx.store(scope, record, result.old_data)
    return result


def _write_update(
    tx: _Transaction,
    scope: str,
    key: str,
    operations: Sequence[Operation],
    ttl: float | None,
    if_version: int | None,
    max_value_bytes: int,
) -> WriteResult:
    current = tx.load(scope, key)
    record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, tx.now)
    if record is not None:
        tx.store(scope, record, result.old_data)
    return result


def _write_delete(tx: _Transaction, scope: str, key: str, if_version: int | None) -> bytes | None:
    current = tx.load(scope, key)
    check_version(scope, key, current, if_version)
    if current is None:
        return None
    tx.remove(scope, current)
    return current.data


def _write_commit(
    tx: _Transaction, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]
) -> None:
    for (scope, key), version in expected.items():  # every check before any write: all or nothing
        check_version(scope, key, tx.load(scope, key), version)
    for write in writes:
        current = tx.load(write.scope, write.key)
        record = plan_transaction_write(current, write, tx.now)
        if record is not None:
            tx.store(write.scope, record, None if current is None else current.data)
        elif current is not None:
            tx.remove(write.scope, current)


def _write_restore(
    tx: _Transaction,
    scope: str,
    key: str,
    data: bytes,
    version: int | None,
    expires_at: float | None,
    replace: bool,
) -> bool:
    current = tx.load(scope, key)
    if current is not None and not replace:
        return False
    tx.store(scope, plan_restore(current, key, data, version, expires_at), None if current is None else current.data)
    return True


# -- one write alone, while events are off: one autocommit statement, no transaction (issue 15) ---------
#
# (A lone ``delete`` too: one ``DELETE ... RETURNING`` of the row, below.)
# A lone ``set`` or ``update`` in a transaction is five statements: ``BEGIN IMMEDIATE``, the events flag,
# the row, the upsert, ``COMMIT``. While no process records events it needs one: an autocommit upsert
# that checks the events flag itself (it writes nothing if events are on) and hands the row it replaces
# to Python from inside the statement (``motia_old`` / ``motia_plan``, see
# :class:`~motia.state.backends.sqlite.connection.RowHook`), so the old value for the result, and for
# ``update`` the new value computed from the old, come from the very row the statement replaces, under
# its write lock. Being one statement, the write is as atomic and durable as the transaction it
# replaces. A write the statement cannot do alone (events on; an ``update`` of an absent key; an
# ``if_version``; an error in planning) falls back to reading the row and writing by compare-and-set
# (below), or to the transaction.

_LIVE_OLD = "(motia_state.expires_at IS NULL OR motia_state.expires_at > ?1)"
_EVENTS_OFF = "NOT EXISTS (SELECT 1 FROM motia_meta WHERE name = 'events' AND value = 'on')"
#: ``?1`` now, ``?2`` scope, ``?3`` key, ``?4`` the new value, ``?5`` the new expiry (the version follows
#: :func:`~motia.state.backends._writes.plan_set`: one more than a live row's, else 1). ``motia_old`` keeps
#: the old row and answers NULL, so the new value stays in SQLite.
_SET_ONE_TTL = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at)"
    f" SELECT ?2, ?3, ?4, 1, ?5 WHERE {_EVENTS_OFF}"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " value = coalesce(motia_old(motia_state.value, motia_state.version, motia_state.expires_at), excluded.value),"
    f" version = CASE WHEN {_LIVE_OLD} THEN motia_state.version + 1 ELSE 1 END,"
    " expires_at = excluded.expires_at"
)
#: The same without an expiry: ``NULL`` written in the statement, not bound (see :func:`blob`).
_SET_ONE = _SET_ONE_TTL.replace("?5", "NULL")
#: ``?1`` now, ``?2`` scope, ``?3`` key, ``?4`` the new expiry (a ttl was given); the value is planned in Python.
_UPDATE_ONE_TTL = (
    "UPDATE motia_state SET"
    " value = motia_plan(value, version, expires_at),"
    f" version = CASE WHEN {_LIVE_OLD} THEN version + 1 ELSE 1 END,"
    " expires_at = ?4"
    f" WHERE scope = ?2 AND key = ?3 AND {_EVENTS_OFF}"
)
#: Without a ttl: the live row's expiry is kept, as :func:`~motia.state.backends._writes.plan_update` does.
_UPDATE_ONE = _UPDATE_ONE_TTL.replace("?4", f"CASE WHEN {_LIVE_OLD} THEN expires_at END")

_CAS_UPSERT = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at)"
    f" SELECT ?, ?, ?, ?, ? WHERE {_EVENTS_OFF}"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " value = excluded.value, version = excluded.version, expires_at = excluded.expires_at"
    " WHERE motia_state.version = ? AND motia_state.value = ? AND motia_state.expires_at IS ?"
)


def _compare_and_set(connection: sqlite3.Connection, scope: str, key: str, row: Row | None, record: Record) -> bool:
    """Write ``record`` if ``(scope, key)`` still holds ``row`` (``None``: absent) and events are off.

    The read and the compare-and-set are two statements, so the upsert applies only if the row is still
    byte for byte what was read (value, version and expiry; a version alone could have been deleted and
    written again meanwhile)."""
    # An absent row is expected with version -1: any row found at insert time makes the update a no-op.
    expected = (-1, b"", None) if row is None else (row[1], row[0], row[2])
    cursor = connection.execute(_CAS_UPSERT, (scope, key, record.data, record.version, record.expires_at, *expected))
    return cursor.rowcount == 1


def _live(key: str, row: Row | None, now: float) -> Record | None:
    if row is None or (row[2] is not None and row[2] <= now):
        return None
    return _tuple(Record, (key, row[0], row[1], row[2]))  # without the named tuple's __new__ frame


def _lone_set(
    backend: Any,
    connection: HookedConnection,
    now: float,
    trace: str | None,
    scope: str,
    key: str,
    data: bytes,
    ttl: float | None,
    if_version: int | None,
) -> Any:
    if if_version is None:  # no condition to check before writing: one statement
        hook = connection.hook
        hook.row = None
        if ttl is None:
            cursor = connection.writes.execute(_SET_ONE, (now, scope, key, blob(data)))
        else:
            cursor = connection.writes.execute(_SET_ONE_TTL, (now, scope, key, blob(data), now + ttl))
        if cursor.rowcount != 1:
            return FALLBACK  # events are on
        row = hook.row  # what plan_set would answer, as the statement's version did: a live row's next, else 1
        if row is None or (row[2] is not None and row[2] <= now):
            return _tuple(WriteResult, (None, data, 1))
        return _tuple(WriteResult, (row[0], data, row[1] + 1))
    row = connection.execute(_SELECT_ONE, (scope, key)).fetchone()
    record, result = plan_set(scope, key, _live(key, row, now), data, ttl, if_version, now)
    return result if _compare_and_set(connection, scope, key, row, record) else FALLBACK


def _lone_update(
    backend: Any,
    connection: HookedConnection,
    now: float,
    trace: str | None,
    scope: str,
    key: str,
    operations: Sequence[Operation],
    ttl: float | None,
    if_version: int | None,
    max_value_bytes: int,
) -> Any:
    if if_version is None and operations:  # one statement, if the row exists
        hook = connection.hook
        planned: list[WriteResult] = []

        def plan(row: Row) -> bytes:
            # plan_update's value and result for a row without if_version, spelled out (the statement itself
            # sets the version and the expiry alike): a live row's document and next version, else {} and 1
            expires_at = row[2]
            if expires_at is None or expires_at > now:
                old: bytes | None = row[0]
                document = decode(row[0])
                version = row[1] + 1
            else:
                old = None
                document = {}
                version = 1
            data = encode(apply_operations(document, operations), max_value_bytes)
            planned.append(_tuple(WriteResult, (old, data, version)))
            return data

        hook.plan = plan
        try:
            if ttl is None:
                cursor = connection.writes.execute(_UPDATE_ONE, (now, scope, key))
            else:
                cursor = connection.writes.execute(_UPDATE_ONE_TTL, (now, scope, key, now + ttl))
        finally:
            hook.plan = None
        if cursor.rowcount == 1:
            return planned[0]
        # No row (or events on): read and write by compare-and-set, which also inserts.
    row = connection.execute(_SELECT_ONE, (scope, key)).fetchone()
    current = _live(key, row, now)
    record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, now)
    if record is None:  # nothing to write (no operations): the transaction also removes an expired row
        return FALLBACK
    return result if _compare_and_set(connection, scope, key, row, record) else FALLBACK


#: ``?1`` scope, ``?2`` key: the row removed, if events are off. (An expired row goes too, as the transaction's
#: read removes it, and counts as absent.)
_DELETE_ONE = f"DELETE FROM motia_state WHERE scope = ?1 AND key = ?2 AND {_EVENTS_OFF} RETURNING value, expires_at"
_EVENTS_ON = "SELECT 1 FROM motia_meta WHERE name = 'events' AND value = 'on'"


def _lone_delete(
    backend: Any,
    connection: HookedConnection,
    now: float,
    trace: str | None,
    scope: str,
    key: str,
    if_version: int | None,
) -> Any:
    if if_version is not None:
        return FALLBACK
    rows = connection.writes.execute(_DELETE_ONE, (scope, key)).fetchall()  # to the end: the statement then commits
    if rows:
        data, expires_at = rows[0]
        return None if expires_at is not None and expires_at <= now else data
    # Nothing removed: the key was absent, or events are on (once on, never off: so if the flag is off now, it
    # was off for the statement, and the key was absent). With events on, the transaction records the event.
    return FALLBACK if connection.execute(_EVENTS_ON).fetchone() else None


#: The writes that have a form without a transaction, used for a batch of one while events are off: each
#: takes ``(backend, connection, now, trace, *args)`` and returns its result or :data:`FALLBACK`.
_LONE_WRITES: dict[Callable[..., Any], Callable[..., Any]] = {
    _write_set: _lone_set,
    _write_update: _lone_update,
    _write_delete: _lone_delete,
}
#: The same while events are on (see :mod:`~motia.state.backends.sqlite.recorded`), taking the same arguments.
_LONE_EVENT_WRITES: dict[Callable[..., Any], Callable[..., Any]] = {
    _write_set: recorded_set,
    _write_update: recorded_update,
    _write_delete: recorded_delete,
}


#: Writes whose first two arguments are the ``(scope, key)`` they touch: a batch prefetches those rows.
_KEYED_WRITES = (_write_set, _write_update, _write_delete, _write_restore)
#: Writes that only read rows and buffer their changes in the transaction (they execute no write
#: statement until the batch's final flush), so undoing their buffered changes undoes them.
_BUFFERED_WRITES = (*_KEYED_WRITES, _write_commit)


def _write_clear(tx: _Transaction, scope: str) -> int:
    """Delete every row of ``scope``. Values are read only when events need them, and then streamed in
    chunks straight into deliveries or the outbox, so clearing a large scope never holds its values in memory."""
    tx.flush()
    connection = tx.connection
    if not tx.record_events:
        live: int = connection.execute(
            f"SELECT count(*) FROM motia_state WHERE scope = ? AND {_LIVE}", (scope, tx.now)
        ).fetchone()[0]
    else:
        live = removed = size = 0
        events: list[Event] = []
        rows = connection.execute("SELECT key, value, version, expires_at FROM motia_state WHERE scope = ?", (scope,))
        for key, data, version, expires_at in rows:  # one row at a time from SQLite, in key order
            expired = expires_at is not None and expires_at <= tx.now
            live += not expired
            removed += 1
            events.append(("expired" if expired else "deleted", scope, key, data, None, version, tx.now, tx.trace))
            size += len(data)
            if size >= CLEAR_CHUNK_BYTES or len(events) >= CLEAR_CHUNK_ROWS:
                tx.write_events(events)
                events, size = [], 0
        if events:
            tx.write_events(events)
    connection.execute("DELETE FROM motia_state WHERE scope = ?", (scope,))
    tx.forget_scope(scope)
    return live


def _write_purge(tx: _Transaction, limit: int) -> int:
    tx.flush()
    rows = tx.connection.execute(
        "SELECT scope, key, value, version FROM motia_state WHERE expires_at IS NOT NULL AND expires_at <= ?"
        " ORDER BY expires_at LIMIT ?",
        (tx.now, limit),
    ).fetchall()
    if rows:
        tx.connection.executemany(_DELETE, [(scope, key) for scope, key, _, _ in rows])
    for scope, key, data, version in rows:
        tx.event("expired", scope, key, data, None, version)
    return len(rows)
