"""A lone ``set``, ``update`` or ``delete`` while events are on: the write and its change events in one
autocommit statement, without a transaction (issue 15).

In a transaction a lone write recording its event is six statements (``BEGIN IMMEDIATE``, the row, the
upsert, the outbox row, ``COMMIT``, plus the Python of the batch). Here it is one ``INSERT`` into a
``TEMP`` view of this connection whose ``INSTEAD OF`` trigger writes the outbox rows from the row it is
about to replace, then the row (a ``set`` writes the row first, and its outbox row takes the replaced row
from the hook, below): a statement and the triggers it fires are atomic, so the event is
committed with the write or not at all (crash safety as before), under the same write lock (per-key
order: outbox seqs increase in commit order, as in a transaction). The events are exactly those of
:class:`~motia.state.backends.sqlite.transaction._Transaction`: ``expired`` for an expired row the write
replaces (then ``created``), ``created``/``updated``/``deleted`` with the old and new values, the version,
the write's timestamp and ``traceparent``. The old row reaches Python through the connection's
:class:`~motia.state.backends.sqlite.connection.RowHook`, as for the lone writes while events are off.

The outbox row takes its seq as :data:`~motia.state.backends.sqlite.outbox._INSERT_EVENT` does. A lone
event always goes to the outbox (a delivery made in the write costs more pages, see
:func:`~motia.state.backends.sqlite.outbox.record`); a burst of them is dispatched in one transaction.

What the statement cannot do alone falls back to the transaction (:data:`FALLBACK`): an ``if_version``,
an ``update`` of an absent or expired key, an error in planning, a busy lock.

The view and trigger are ``TEMP`` (made on a connection's first such write, never stored in the file):
no schema change, and a file stays readable by every pymotia that reads schema version 9.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from motia.state.backends._writes import _tuple
from motia.state.backends.sqlite.connection import HookedConnection, Row, blob
from motia.state.backends.types import WriteResult
from motia.state.ops import Operation, apply_operations
from motia.state.values import decode, encode

#: What a lone write returns when it did not write: run the write in a transaction instead.
FALLBACK: Any = object()

#: The seq of a new outbox row: after the newest outbox row and after the counter of direct deliveries.
_SEQ = (
    "max(coalesce((SELECT max(seq) FROM motia_state_events), 0),"
    " coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'event_seq'), 0)) + 1"
)
_EVENT_COLUMNS = "motia_state_events (seq, event_type, scope, key, old_value, new_value, version, timestamp, trace)"
_LIVE_NEW = "(expires_at IS NULL OR expires_at > NEW.now)"
_ROW = "scope = NEW.scope AND key = NEW.key"


def _view(name: str, columns: str) -> str:
    """A view with no rows, only there to be inserted into (its trigger does the work)."""
    nulls = ", ".join("NULL" for _ in columns.split(","))
    return f"CREATE TEMP VIEW IF NOT EXISTS {name} ({columns}) AS SELECT {nulls} WHERE 0"


_SCHEMA = (
    _view("motia_set_recorded", "now, scope, key, value, expires_at, trace"),
    # The row first: the upsert hands the row it replaces to Python (motia_old, the hook's ``row``), where the
    # outbox row then takes the event's type, old value and version from (motia_recorded_*, see _prepare). A
    # lookup of the row per column (three, and one more for an expired row) cost ~17,000 instructions more per
    # write (issue 15). An expired row is left to the transaction (it fires ``expired`` before ``created``):
    # the statement aborts, its upsert with it.
    f"""CREATE TEMP TRIGGER IF NOT EXISTS motia_set_recorded INSTEAD OF INSERT ON motia_set_recorded BEGIN
        INSERT INTO motia_state (scope, key, value, version, expires_at)
            VALUES (NEW.scope, NEW.key, NEW.value, 1, NEW.expires_at)
            ON CONFLICT (scope, key) DO UPDATE SET
            value = coalesce(motia_old(motia_state.value, motia_state.version, motia_state.expires_at), excluded.value),
            version = motia_state.version + 1,
            expires_at = excluded.expires_at;
        INSERT INTO {_EVENT_COLUMNS} VALUES ({_SEQ},
            coalesce(motia_recorded_type(NEW.now), RAISE(ABORT, 'motia: an expired row')),
            NEW.scope, NEW.key, motia_recorded_old(), NEW.value, motia_recorded_version(), NEW.now, NEW.trace);
    END""",
    _view("motia_update_recorded", "now, scope, key, expires_at, trace"),
    # Only a live row (else nothing is written, and the transaction creates the key): its new value is
    # planned in Python (motia_plan) into the outbox row, and the row takes it from there.
    f"""CREATE TEMP TRIGGER IF NOT EXISTS motia_update_recorded INSTEAD OF INSERT ON motia_update_recorded BEGIN
        SELECT RAISE(IGNORE) WHERE NOT EXISTS (SELECT 1 FROM motia_state WHERE {_ROW} AND {_LIVE_NEW});
        INSERT INTO {_EVENT_COLUMNS} VALUES ({_SEQ}, 'updated', NEW.scope, NEW.key,
            (SELECT value FROM motia_state WHERE {_ROW}),
            (SELECT motia_plan(value, version, expires_at) FROM motia_state WHERE {_ROW}),
            (SELECT version FROM motia_state WHERE {_ROW}) + 1, NEW.now, NEW.trace);
        UPDATE motia_state SET
            value = (SELECT new_value FROM motia_state_events WHERE seq = last_insert_rowid()),
            version = version + 1,
            expires_at = coalesce(NEW.expires_at, expires_at)
            WHERE {_ROW};
    END""",
    _view("motia_delete_recorded", "now, scope, key, trace"),
    f"""CREATE TEMP TRIGGER IF NOT EXISTS motia_delete_recorded INSTEAD OF INSERT ON motia_delete_recorded BEGIN
        SELECT RAISE(IGNORE) WHERE NOT EXISTS (SELECT 1 FROM motia_state WHERE {_ROW});
        INSERT INTO {_EVENT_COLUMNS} VALUES ({_SEQ},
            CASE WHEN EXISTS (SELECT 1 FROM motia_state WHERE {_ROW} AND {_LIVE_NEW}) THEN 'deleted' ELSE 'expired' END,
            NEW.scope, NEW.key,
            (SELECT coalesce(motia_old(value, version, expires_at), value) FROM motia_state WHERE {_ROW}),
            NULL, (SELECT version FROM motia_state WHERE {_ROW}), NEW.now, NEW.trace);
        DELETE FROM motia_state WHERE {_ROW};
    END""",
)
_SET = "INSERT INTO motia_set_recorded VALUES (?, ?, ?, ?, ?, ?)"
_UPDATE = "INSERT INTO motia_update_recorded VALUES (?, ?, ?, ?, ?)"
_DELETE = "INSERT INTO motia_delete_recorded VALUES (?, ?, ?, ?)"
#: The common case, no expiry and no ``traceparent``: ``NULL`` written in, not bound (see ``connection.blob``).
_SET_PLAIN = "INSERT INTO motia_set_recorded VALUES (?, ?, ?, ?, NULL, NULL)"
_UPDATE_PLAIN = "INSERT INTO motia_update_recorded VALUES (?, ?, ?, NULL, NULL)"
_DELETE_PLAIN = "INSERT INTO motia_delete_recorded VALUES (?, ?, ?, NULL)"


def _prepare(connection: HookedConnection) -> None:
    """Make this connection's views and triggers, once (they live as long as the connection; made again
    after a failure half way), and the functions that read the row a recorded set replaced from the hook."""
    hook = connection.hook

    def event_type(now: float) -> str | None:
        row = hook.row
        if row is None:
            return "created"
        return None if _expired(row, now) else "updated"

    def old_value() -> bytes | None:
        row = hook.row
        return None if row is None else row[0]

    def version() -> int:
        row = hook.row
        return 1 if row is None else row[1] + 1

    connection.create_function("motia_recorded_type", 1, event_type)
    connection.create_function("motia_recorded_old", 0, old_value)
    connection.create_function("motia_recorded_version", 0, version)
    for statement in _SCHEMA:
        connection.execute(statement)
    connection.hook.recording = True


def _recorded(backend: Any) -> None:
    """An outbox row was committed: the dispatcher must look (this process's count) and wake."""
    backend._subscribers.outbox_writes += 1
    backend._notify_listeners()


def _expired(row: Row, now: float) -> bool:
    return row[2] is not None and row[2] <= now


def recorded_set(
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
    if if_version is not None:
        return FALLBACK
    hook = connection.hook
    if not hook.recording:
        _prepare(connection)
    hook.row = None
    if ttl is None and trace is None:
        connection.writes.execute(_SET_PLAIN, (now, scope, key, blob(data)))
    else:
        connection.writes.execute(_SET, (now, scope, key, blob(data), now + ttl if ttl is not None else None, trace))
    _recorded(backend)
    row = hook.row
    if row is None or _expired(row, now):
        return _tuple(WriteResult, (None, data, 1))
    return _tuple(WriteResult, (row[0], data, row[1] + 1))


def recorded_update(
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
    if if_version is not None or not operations:
        return FALLBACK
    hook = connection.hook
    if not hook.recording:
        _prepare(connection)
    planned: list[WriteResult] = []

    def plan(row: Row) -> bytes:
        # plan_update's value and result for a live row without if_version, spelled out (the statement sets
        # the version and the expiry itself), as keyvalue's lone update does
        data = encode(apply_operations(decode(row[0]), operations), max_value_bytes)
        planned.append(_tuple(WriteResult, (row[0], data, row[1] + 1)))
        return data

    hook.plan = plan
    try:
        if ttl is None and trace is None:
            connection.writes.execute(_UPDATE_PLAIN, (now, scope, key))
        else:
            connection.writes.execute(_UPDATE, (now, scope, key, now + ttl if ttl is not None else None, trace))
    finally:
        hook.plan = None
    if not planned:  # no live row: the transaction creates the key (and expires an expired row)
        return FALLBACK
    _recorded(backend)
    return planned[0]


def recorded_delete(
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
    hook = connection.hook
    if not hook.recording:
        _prepare(connection)
    hook.row = None
    if trace is None:
        connection.writes.execute(_DELETE_PLAIN, (now, scope, key))
    else:
        connection.writes.execute(_DELETE, (now, scope, key, trace))
    row = hook.row
    if row is None:  # nothing was there: nothing written, no event
        return None
    _recorded(backend)
    return None if _expired(row, now) else row[0]
