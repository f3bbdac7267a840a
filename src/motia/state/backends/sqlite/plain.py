"""A group of plain ``set`` and ``update`` calls while no process records events, committed without the
per-call bookkeeping of :class:`~motia.state.backends.sqlite.transaction._Transaction` (issue 15).

Group commit runs each call of a batch through the transaction's buffers: a load, an undo log so that a
call that raises can be taken back alone, the events it would record. With events off, a batch of sets
and updates needs none of that: each call is planned from the rows read once for the whole batch
(one ``SELECT ... IN`` per scope) and from what the calls before it in the batch left, and a call that
raises (a conflict, a bad operation) has changed nothing yet, because nothing is buffered until its plan
succeeds. The rows are then written with one ``executemany``. The versions, results and errors are those of
:func:`~motia.state.backends._writes.plan_set` / :func:`~motia.state.backends._writes.plan_update`, as in
the transaction; an expired row is deleted when read, as the transaction's load does.

What it does not handle it hands back (``None``): the events flag found on, or any SQLite error (the
transaction is rolled back and the batch runs the usual way, which reports the error as it always has).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from motia.state.backends._writes import plan_set, plan_update
from motia.state.backends.sqlite.connection import blob
from motia.state.backends.sqlite.keyvalue import _write_set, _write_update
from motia.state.backends.sqlite.transaction import _DELETE, _UPSERT
from motia.state.backends.types import Record

#: :data:`~motia.state.backends.sqlite.transaction._UPSERT` for a row without an expiry.
_UPSERT_LASTING = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES (?, ?, ?, ?, NULL)"
    " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, version = excluded.version, expires_at = NULL"
)
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
    wanted: dict[str, dict[str, None]] = {}
    for call in calls:
        wanted.setdefault(call.args[0], {})[call.args[1]] = None
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
            for key, data, version, expires_at in rows:
                if expires_at is not None and expires_at <= now:
                    dirty[(scope, key)] = None  # expired: removed when read, as the transaction does
                else:
                    known[(scope, key)] = Record(key, data, version, expires_at)
    outcomes: list[Any] = []
    for call in calls:
        args = call.args  # indexed, not unpacked with a star (which builds a list per call)
        scope = args[0]
        key = args[1]
        pair = (scope, key)
        current = known.get(pair)
        record: Record | None
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
    lasting: list[tuple[str, str, bytearray, int]] = []
    expiring: list[tuple[str, str, bytearray, int, float]] = []
    deletes: list[tuple[str, str]] = []
    for pair, record in dirty.items():
        if record is None:
            deletes.append(pair)
        elif record.expires_at is None:  # NULL written in, not bound (see connection.blob)
            lasting.append((*pair, blob(record.data), record.version))
        else:
            expiring.append((*pair, blob(record.data), record.version, record.expires_at))
    if lasting:
        connection.executemany(_UPSERT_LASTING, lasting)
    if expiring:
        connection.executemany(_UPSERT, expiring)
    if deletes:
        connection.executemany(_DELETE, deletes)
    return outcomes
