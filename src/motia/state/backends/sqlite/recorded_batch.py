"""A group of ``set`` calls while events are on, committed without the per-call bookkeeping of
:class:`~motia.state.backends.sqlite.transaction._Transaction` (issue 15): what concurrent writers beside a
state trigger make. See :func:`recorded_sets`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, cast

from motia.state.backends._writes import _tuple
from motia.state.backends.sqlite.connection import HookedConnection, Row
from motia.state.backends.sqlite.keyvalue import _write_set
from motia.state.backends.sqlite.outbox import Event, record
from motia.state.backends.sqlite.plain import write_blind_sets
from motia.state.backends.types import WriteResult


def recorded_sets(backend: Any, connection: sqlite3.Connection, calls: Sequence[Any], now: float) -> list[Any] | None:
    """A group of ``set`` calls without ``if_version`` while events are on, in one transaction without the
    per-call bookkeeping of :class:`~motia.state.backends.sqlite.transaction._Transaction` (issue 15).

    What concurrent writers beside a state trigger make. As the plain batch of sets does while events are off
    (:mod:`~motia.state.backends.sqlite.plain`), the calls are written by multi-row upserts in the batch's order,
    each row handing the row it replaces to Python (``motia_olds``): nothing about that row can make such a set
    fail, so no read, no plan, no undo log. The events are built from those rows, exactly the transaction's
    (``created``/``updated`` with the old and new values; an expired row's ``expired``, without a
    ``traceparent``, first, as the transaction's prefetch finds them), and recorded in the same transaction as
    the transaction records them (:func:`~motia.state.backends.sqlite.outbox.record`: the group's deliveries,
    or outbox rows).

    Returns one :class:`~motia.state.backends.types.WriteResult` per call, or ``None`` when it cannot: a call
    that is not such a set (nothing done), or SQLite failed (rolled back). The transaction then runs the batch
    and reports any error as it does. Raises ``_Busy`` when the write lock is taken (nothing done).
    """
    for call in calls:
        if call.function is not _write_set or call.args[4] is not None:
            return None
    backend._begin(connection)
    try:
        olds = write_blind_sets(cast(HookedConnection, connection), calls, now)  # the writer's connections all are
        outcomes: list[Any] = []
        events: list[Event] = []
        expired: list[Event] = []
        row: Row | None
        for call, row in zip(calls, olds, strict=True):
            scope, key, data = call.args[0], call.args[1], call.args[2]
            if row is not None and row[2] is not None and row[2] <= now:  # expired: as the transaction's load
                expired.append(("expired", scope, key, row[0], None, row[1], now, None))
                row = None
            if row is None:
                outcomes.append(_tuple(WriteResult, (None, data, 1)))
                events.append(("created", scope, key, None, data, 1, now, call.trace))
            else:
                version = row[1] + 1
                outcomes.append(_tuple(WriteResult, (row[0], data, version)))
                events.append(("updated", scope, key, row[0], data, version, now, call.trace))
        if expired:  # first, by scope, as the transaction's prefetch finds them (one read per scope)
            scopes: dict[str, int] = {}
            for call in calls:
                scopes.setdefault(call.args[0], len(scopes))
            expired.sort(key=lambda event: scopes[event[1]])
            events = expired + events
        notify = record(connection, backend._subscribers, events, now)
        connection.execute("COMMIT")
    except (sqlite3.Error, UnicodeEncodeError):
        backend._rollback(connection)
        return None
    except BaseException:
        backend._rollback(connection)
        raise
    if notify:
        backend._notify_listeners()
    return outcomes
