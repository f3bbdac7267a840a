"""A group of plain ``set`` and ``update`` calls while no process records events, committed without the
per-call bookkeeping of :class:`~motia.state.backends.sqlite.transaction._Transaction` (issue 15).

Group commit runs each call of a batch through the transaction's buffers: a load, an undo log so that a
call that raises can be taken back alone, the events it would record. With events off, a batch of sets
and updates needs none of that: each call is planned from the rows read once for the whole batch
(one ``SELECT ... IN`` per scope) and from what the calls before it in the batch left, and a call that
raises (a conflict, a bad operation) has changed nothing yet, because nothing is buffered until its plan
succeeds. The batch's final rows (one per key) are then written by multi-row upserts of up to :data:`_MAX_ROWS`
rows (rewriting the rows it read, inserting new ones), and its deletes by one ``executemany``. The versions,
results and errors are those of :func:`~motia.state.backends._writes.plan_set` /
:func:`~motia.state.backends._writes.plan_update` (the common update's plan spelled out inline), as in the
transaction; an expired row is deleted when read, as the transaction's load does.

A batch of sets without ``if_version`` (what many tasks writing at once make) needs no plan at all: nothing about
the old row can make it fail. It is written without the read, scope by scope (sets of different scopes touch
different rows) and in the batch's order, by multi-row upserts of up to :data:`_MAX_ROWS` distinct keys of one
scope, each row handing the row it replaces to Python from inside the statement
(``motia_olds``, see :class:`~motia.state.backends.sqlite.connection.RowHook`), which answers the old value and
the version as :func:`~motia.state.backends._writes.plan_set` would (a later set of the same key, in a later
statement, sees the earlier one's row). The commonest such batch, sets of distinct keys of one scope without a ttl,
is checked, written and answered in two passes over its calls (:func:`_run_simple_sets`). Likewise a batch of updates
of distinct keys of one scope without a ttl or ``if_version`` is planned inside the upsert that writes it
(``motia_plans``, :func:`_run_simple_updates`), without the read.

What it does not handle it hands back (``None``): the events flag found on, or any SQLite error (the
transaction is rolled back and the batch runs the usual way, which reports the error as it always has).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from motia.state.backends._writes import _tuple, plan_set, plan_update
from motia.state.backends.sqlite import multirow
from motia.state.backends.sqlite.connection import HookedConnection, Row, blob
from motia.state.backends.sqlite.keyvalue import _write_set, _write_update
from motia.state.backends.sqlite.transaction import _DELETE
from motia.state.backends.types import Record, WriteResult
from motia.state.ops import apply_operations as _apply
from motia.state.values import decode as _decode
from motia.state.values import encode as _encode

#: Rows per multi-row upsert, at most (:mod:`~motia.state.backends.sqlite.multirow`). One statement per row (an
#: ``executemany``) cost ~2.5k more instructions per set, and ~3k more per row an update rewrites (issue 15).
_MAX_ROWS = 128


def _blind_sets(rows: int, lasting: bool) -> str:
    """The upsert of ``rows`` sets without a condition in one scope, with distinct keys: the scope once (``?1``),
    per row ``key, value`` (and the expiry, unless ``lasting``: then ``NULL`` is written in, not bound, see
    :func:`blob`), then ``now`` once.

    The version is :func:`~motia.state.backends._writes.plan_set`'s (a live row's next, else 1); ``motia_olds``
    keeps the replaced row for the result, by its key (hence one scope, distinct keys), and answers NULL (the new
    value stays in SQLite)."""
    row = "(?1, ?, ?, 1, NULL)" if lasting else "(?1, ?, ?, 1, ?)"
    return (
        "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT (scope, key) DO UPDATE SET value = coalesce(motia_olds(motia_state.key,"
        " motia_state.value, motia_state.version, motia_state.expires_at), excluded.value),"
        " version = CASE WHEN motia_state.expires_at IS NULL OR motia_state.expires_at > ?"
        " THEN motia_state.version + 1 ELSE 1 END,"
        " expires_at = excluded.expires_at"
    )


def _planned_rows(rows: int, lasting: bool) -> str:
    """The upsert of ``rows`` planned rows (distinct keys): per row ``scope, key, value, version`` and the expiry
    (unless ``lasting``: then ``NULL`` is written in, not bound). A row the batch read is rewritten, a new one
    inserted."""
    row = "(?, ?, ?, ?, NULL)" if lasting else "(?, ?, ?, ?, ?)"
    return (
        "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES "
        + ", ".join([row] * rows)
        + " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, version = excluded.version,"
        " expires_at = excluded.expires_at"
    )


def _planned_updates(rows: int) -> str:
    """The upsert of ``rows`` updates of one scope, with distinct keys, planned inside the statement: the scope once
    (``?1``), per row the key, then ``now`` twice. A stored row's new value comes from ``motia_plans`` (the old row
    handed to Python), its version is the live row's next (else 1) and its expiry kept (none if it had expired). A
    missing key is inserted as a placeholder (an empty value, version 0), planned from ``{}`` after the statement."""
    live = "motia_state.expires_at IS NULL OR motia_state.expires_at > ?"
    return (
        "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES "
        + ", ".join(["(?1, ?, X'', 0, NULL)"] * rows)
        + " ON CONFLICT (scope, key) DO UPDATE SET value = motia_plans(motia_state.key, motia_state.value,"
        " motia_state.version, motia_state.expires_at),"
        f" version = CASE WHEN {live} THEN motia_state.version + 1 ELSE 1 END,"
        f" expires_at = CASE WHEN {live} THEN motia_state.expires_at END"
    )


#: Gives a row whose planned update raised its version and expiry back (the plan gave back its value).
_RESTORE = "UPDATE motia_state SET version = ?, expires_at = ? WHERE scope = ? AND key = ?"
#: :func:`_planned_updates` by size, for every power of two up to :data:`_MAX_ROWS`.
_PLANNED_UPDATES = {size: _planned_updates(size) for size in multirow.sizes(_MAX_ROWS)}
#: :func:`_blind_sets` and :func:`_planned_rows` by ``lasting`` and size, for every power of two up to
#: :data:`_MAX_ROWS`.
_BLIND_SETS = {
    lasting: {size: _blind_sets(size, lasting) for size in multirow.sizes(_MAX_ROWS)} for lasting in (True, False)
}
_PLANNED_ROWS = {
    lasting: {size: _planned_rows(size, lasting) for size in multirow.sizes(_MAX_ROWS)} for lasting in (True, False)
}
#: The calls a plain batch runs: ``function(transaction, scope, key, ...)`` with these functions.
PLAIN_WRITES = (_write_set, _write_update)
#: Keys read per ``SELECT ... IN`` (below SQLite's default limit of bound parameters).
_READ_CHUNK = 500


class Failed:
    """A call of the batch raised ``error`` and changed nothing (the writer answers it as a failure)."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def run_plain(connection: sqlite3.Connection, calls: Sequence[Any], now: float) -> list[Any]:
    """Plan and write ``calls`` (each with ``function`` and ``args``) inside the caller's open transaction.

    Returns one outcome per call: its :class:`~motia.state.backends.types.WriteResult` or a :class:`Failed`.
    Raises what SQLite raises (the caller rolls back).
    """
    simple = _run_simple_sets(connection, calls, now)  # type: ignore[arg-type]
    if simple is None:
        simple = _run_simple_updates(connection, calls, now)  # type: ignore[arg-type]
    if simple is not None:
        return simple
    for call in calls:
        if call.function is not _write_set or call.args[4] is not None:
            break
    else:  # sets only, none with if_version: no read, no plan
        return _run_sets(connection, calls, now)  # type: ignore[arg-type]
    wanted: dict[str, dict[str, None]] = {}
    for call in calls:
        args = call.args
        keys = wanted.get(args[0])
        if keys is None:  # not setdefault(scope, {}): that builds a dict per call to throw away
            keys = wanted[args[0]] = {}
        keys[args[1]] = None
    known: dict[tuple[str, str], Record | None] = {}
    dirty: dict[tuple[str, str], Record | None] = {}
    for scope, keys in wanted.items():
        listed = list(keys)
        for start in range(0, len(listed), _READ_CHUNK):
            chunk = listed[start : start + _READ_CHUNK]
            rows = connection.execute(
                "SELECT key, value, version, expires_at FROM motia_state"
                f" WHERE scope = ? AND key IN ({','.join('?' * len(chunk))})",
                (scope, *chunk),
            ).fetchall()
            for row in rows:  # (key, value, version, expires_at): a Record's fields, in its order
                expires_at = row[3]
                if expires_at is not None and expires_at <= now:
                    dirty[(scope, row[0])] = None  # expired: removed when read, as the transaction does
                else:
                    known[(scope, row[0])] = _tuple(Record, row)
    outcomes: list[Any] = []
    for call in calls:
        args = call.args  # indexed, not unpacked with a star (which builds a list per call)
        scope = args[0]
        key = args[1]
        pair = (scope, key)
        current = known.get(pair)
        record: Record | None
        operations = args[2]
        if call.function is _write_update and args[4] is None and operations:
            # plan_update for the common update (no if_version, some operations), spelled out: no call of eight
            # arguments per update of the batch, no tests of what is known here (issue 15). Same value, version,
            # expiry and result.
            try:
                if current is None:  # a missing key starts as {}
                    old = None
                    document: Any = {}
                    version = 1
                    expires_at = None
                else:
                    old = current[1]
                    document = _decode(old)
                    version = current[2] + 1
                    expires_at = current[3]
                data = _encode(_apply(document, operations), args[5])
            except Exception as exc:  # noqa: BLE001 - answered to its caller; it changed nothing
                outcomes.append(Failed(exc))
                continue
            if args[3] is not None:  # a ttl: a new expiry; else the live row's is kept
                expires_at = now + args[3]
            known[pair] = dirty[pair] = _tuple(Record, (key, data, version, expires_at))
            outcomes.append(_tuple(WriteResult, (old, data, version)))
            continue
        try:
            if call.function is _write_set:
                record, result = plan_set(scope, key, current, args[2], args[3], args[4], now)
            else:
                record, result = plan_update(scope, key, current, args[2], args[3], args[4], args[5], now)
        except Exception as exc:  # noqa: BLE001 - answered to its caller; it changed nothing
            outcomes.append(Failed(exc))
            continue
        if record is not None:
            known[pair] = dirty[pair] = record
        outcomes.append(result)
    _write_rows(connection, dirty)
    return outcomes


def _write_rows(connection: sqlite3.Connection, dirty: dict[tuple[str, str], Record | None]) -> None:
    """Write the batch's final rows (``None``: delete), by multi-row upserts: rows it read are rewritten (an
    ``UPDATE`` per row seeks each key once where an upsert seeks it twice, but a statement per row costs more than
    the seek), new ones inserted."""
    lasting: list[Any] = []  # scope, key, value, version per row
    expiring: list[Any] = []  # and the expiry
    deletes: list[tuple[str, str]] = []
    for pair, record in dirty.items():
        if record is None:
            deletes.append(pair)
        elif record[3] is None:  # no expiry: NULL written in, not bound (see connection.blob)
            lasting += (pair[0], pair[1], blob(record[1]), record[2])  # Record by position, no star unpacking
        else:
            expiring += (pair[0], pair[1], blob(record[1]), record[2], record[3])
    cursor = connection.cursor()
    _upsert(cursor, _PLANNED_ROWS[True], lasting, 4, _NOTHING, _NOTHING)
    _upsert(cursor, _PLANNED_ROWS[False], expiring, 5, _NOTHING, _NOTHING)
    if deletes:
        connection.executemany(_DELETE, deletes)


_NOTHING: list[Any] = []


def _upsert(
    cursor: sqlite3.Cursor, statements: dict[int, str], params: list[Any], width: int, head: list[Any], tail: list[Any]
) -> None:
    """Run ``statements`` (by rows) over ``params`` (``width`` per row, in order, rows with distinct keys), a power of
    two rows at a time, largest first; ``head`` is bound before each statement's rows, ``tail`` after them."""
    for start, rows in multirow.chunks(len(params) // width, _MAX_ROWS):
        chunk = head + params[start * width : (start + rows) * width]
        chunk += tail
        cursor.execute(statements[rows], chunk)


def write_blind_sets(connection: HookedConnection, calls: Sequence[Any], now: float) -> list[Row | None]:
    """Upsert the values of ``calls`` (sets without ``if_version``, args ``(scope, key, data, ttl, if_version)``)
    in their order, without reading first; return the row each replaced (``(value, version, expires_at)``, or
    ``None``), as ``motia_olds`` hands them over. Shared by the plain batch and the recorded one
    (:mod:`~motia.state.backends.sqlite.recorded_batch`), which builds events from those rows.

    Each scope's calls are written apart (:func:`_write_scope`): sets of different scopes touch different rows, so
    their order between scopes changes nothing, and a statement of one scope binds it once and hands its old rows
    over by key alone."""
    if not calls:
        return []
    scope = calls[0].args[0]
    for call in calls:
        if call.args[0] != scope:
            break
    else:  # one scope, what a batch nearly always is
        return _write_scope(connection, scope, calls, now)
    positions: dict[str, list[int]] = {}  # each scope's calls, by their position in the batch
    for index, call in enumerate(calls):
        listed = positions.get(call.args[0])
        if listed is None:
            listed = positions[call.args[0]] = []
        listed.append(index)
    olds: list[Row | None] = [None] * len(calls)
    for scope, listed in positions.items():
        written = _write_scope(connection, scope, [calls[index] for index in listed], now)
        for index, row in zip(listed, written, strict=True):
            olds[index] = row
    return olds


def _write_scope(connection: HookedConnection, scope: str, calls: Sequence[Any], now: float) -> list[Row | None]:
    """:func:`write_blind_sets` for calls of one scope: in runs of distinct keys and one kind (with or without a
    ttl), each by a few multi-row upserts (:func:`_upsert`). The replaced rows come back by key, so a key set again
    starts a new run, written after the one before it: the later set sees the earlier one's row as its old row, as in
    the batch's order."""
    hook = connection.hook
    cursor = connection.writes
    replaced: dict[str, Row] = {}
    hook.rows = replaced
    olds: list[Row | None] = []
    head = [scope]
    tail = [now]
    try:
        run: dict[str, None] = {}  # the keys of the run being gathered, in the calls' order
        params: list[Any] = []
        lasting = True
        for call in calls:
            args = call.args
            key = args[1]
            ttl = args[3]
            if key in run or (ttl is None) is not lasting:
                _upsert(cursor, _BLIND_SETS[lasting], params, 2 if lasting else 3, head, tail)
                olds += [replaced.pop(written, None) for written in run]
                run = {}
                params = []
                lasting = ttl is None
            run[key] = None
            if ttl is None:
                params += (key, blob(args[2]))
            else:
                params += (key, blob(args[2]), now + ttl)
        _upsert(cursor, _BLIND_SETS[lasting], params, 2 if lasting else 3, head, tail)
        olds += [replaced.pop(written, None) for written in run]
    finally:
        hook.rows = None
    return olds


def _run_simple_sets(connection: HookedConnection, calls: Sequence[Any], now: float) -> list[Any] | None:
    """:func:`_run_sets` for the batch many tasks setting keys make: sets of one scope, none with a ttl or
    ``if_version``, each key once. Checked and gathered in one pass over the calls and answered in another, where
    the general path (:func:`write_blind_sets`, runs by scope and by ttl, then the outcomes) makes five (~1k
    instructions a set of 200 tasks; issue 15). ``None`` (nothing done) for any other batch."""
    scope = calls[0].args[0]
    keys: dict[str, None] = {}
    params: list[Any] = []  # key, value per row
    for call in calls:
        args = call.args
        key = args[1]
        if call.function is not _write_set or args[4] is not None or args[3] is not None or args[0] != scope:
            return None
        if key in keys:
            return None
        keys[key] = None
        params += (key, blob(args[2]))
    hook = connection.hook
    replaced: dict[str, Row] = {}
    hook.rows = replaced
    try:
        _upsert(connection.writes, _BLIND_SETS[True], params, 2, [scope], [now])
    finally:
        hook.rows = None
    outcomes: list[Any] = []
    for call in calls:
        args = call.args
        row = replaced.get(args[1])
        if row is None or (row[2] is not None and row[2] <= now):  # absent or expired: a new key
            outcomes.append(_tuple(WriteResult, (None, args[2], 1)))
        else:
            outcomes.append(_tuple(WriteResult, (row[0], args[2], row[1] + 1)))
    return outcomes


def _run_simple_updates(connection: HookedConnection, calls: Sequence[Any], now: float) -> list[Any] | None:
    """A batch of updates of distinct keys of one scope, each with operations and without a ttl or ``if_version``
    (what many tasks updating keys make), planned inside the upsert that writes it (``motia_plans``): each row is
    found once, where the general form reads the batch's rows first (a ``SELECT ... IN``: ~12k instructions a key,
    more than decoding, applying and encoding it; issue 15) and then seeks each again to write it.

    Answers and writes what the general form does: a live row's value planned from it, its version the next, its
    expiry kept; an expired or missing key planned from ``{}``, version 1, no expiry. A call whose plan raises fails
    alone and changes nothing: its row is given back its value by the plan, then its version and expiry after the
    statement (an expired row is deleted, as the general form deletes the expired rows it reads). A missing key's
    placeholder row is planned from ``{}`` after the statement, or deleted if that plan raises. ``None`` (nothing
    done) for any other batch."""
    scope = calls[0].args[0]
    updates: dict[str, Any] = {}  # each key's call arguments
    for call in calls:
        args = call.args
        if (
            call.function is not _write_update
            or args[0] != scope
            or args[3] is not None
            or args[4] is not None
            or not args[2]
            or args[1] in updates
        ):
            return None
        updates[args[1]] = args
    planned: dict[str, Any] = {}  # per key found: its WriteResult, or its Failed and what to give back
    restore: list[tuple[Any, ...]] = []  # (version, expires_at, scope, key) of a live row whose plan raised
    removed: list[tuple[str, str]] = []  # an expired row whose plan raised

    def plan(key: str, value: bytes, version: int, expires_at: float | None) -> bytes:
        args = updates[key]
        try:
            if expires_at is not None and expires_at <= now:  # expired: absent, as the general form reads it
                old = None
                document: Any = {}
                next_version = 1
            else:
                old = value
                document = _decode(value)
                next_version = version + 1
            data = _encode(_apply(document, args[2]), args[5])
        except Exception as exc:  # noqa: BLE001 - answered to its caller; its row is given back below
            planned[key] = Failed(exc)
            if old is None:
                removed.append((scope, key))
            else:
                restore.append((version, expires_at, scope, key))
            return value
        planned[key] = _tuple(WriteResult, (old, data, next_version))
        return data

    hook = connection.hook
    hook.planner = plan
    try:
        _upsert(connection.writes, _PLANNED_UPDATES, list(updates), 1, [scope], [now, now])
    finally:
        hook.planner = None
    if restore:
        connection.executemany(_RESTORE, restore)
    inserted: list[Any] = []  # scope, key, value, version per row
    for key, args in updates.items():
        if key in planned:
            continue
        try:  # a missing key: its placeholder row, planned from {}
            data = _encode(_apply({}, args[2]), args[5])
        except Exception as exc:  # noqa: BLE001 - answered to its caller; its placeholder is deleted
            planned[key] = Failed(exc)
            removed.append((scope, key))
            continue
        planned[key] = _tuple(WriteResult, (None, data, 1))
        inserted += (scope, key, blob(data), 1)
    _upsert(connection.writes, _PLANNED_ROWS[True], inserted, 4, _NOTHING, _NOTHING)
    if removed:
        connection.executemany(_DELETE, removed)
    return [planned[call.args[1]] for call in calls]


def _run_sets(connection: HookedConnection, calls: Sequence[Any], now: float) -> list[Any]:
    """Write a batch of sets without ``if_version`` (see the module's docstring); one outcome per call."""
    olds = write_blind_sets(connection, calls, now)
    outcomes: list[Any] = []
    row: Row | None
    for call, row in zip(calls, olds, strict=True):
        if row is None or (row[2] is not None and row[2] <= now):  # absent or expired: a new key
            outcomes.append(_tuple(WriteResult, (None, call.args[2], 1)))
        else:
            outcomes.append(_tuple(WriteResult, (row[0], call.args[2], row[1] + 1)))
    return outcomes
