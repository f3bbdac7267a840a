"""Where a write's change events go: straight to deliveries in the write's own transaction, or to the outbox.

A change event used to cost an outbox row in the write's transaction, then a dispatch transaction that read
it, copied it into one delivery per subscription, deleted it and moved a cursor (issue 15). Now, once
subscriptions are registered (*direct* mode), a transaction recording a group of events (a group commit
of concurrent writers, a multi-key transaction, a clear) with nothing waiting in the outbox inserts their
deliveries itself: no event row, no dispatch round. The outbox stays for a lone event (cheaper per commit,
see :func:`record`), for events while no subscription is registered yet (they wait for the first
dispatch, which delivers them to the subscriptions it registers and switches the store to direct mode),
and while events wait there (a direct delivery must not overtake them).

``motia_meta`` holds two rows for this:

* ``event_seq``: the last seq a direct delivery took, or a dispatch that emptied the outbox consumed. Direct
  events take theirs from it (one ``UPDATE ... RETURNING``), outbox rows theirs after both it and the newest
  outbox row (a dispatch keeps the newest row it consumed, or, emptying the outbox, raises the counter to
  it), so seqs keep increasing in commit order and a delivery id (``state:{seq}:{step}``) is never reused.
* ``triggers``: the mode, and which set of subscriptions is current. A positive number is direct mode, zero
  or a negative one the outbox. Every change of ``motia_subscriptions`` writes a new random number (in the
  same transaction), so a process keeps its copy of the subscriptions (:class:`Subscribers`) as long as the
  number it read is the one it loaded them under: a subscription another process registers reaches this
  process's very next write. Random, not counted: a transaction that rolled back cannot leave a number
  behind that a later, different set of subscriptions would take again.

A write is delivered to the subscriptions registered when its deliveries are made: at its commit (direct),
or at the dispatch that moves it (outbox), as before.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

from motia.state.backends._events import order_key, state_event_payload, subscribed
from motia.state.backends.sqlite import multirow
from motia.state.backends.types import NewDelivery, Subscription

#: One change event: ``(event_type, scope, key, old_value, new_value, version, timestamp, trace)``.
Event = tuple[str, str, str, bytes | None, bytes | None, int, float, str | None]

_INSERT_DELIVERY = (
    "INSERT OR IGNORE INTO motia_deliveries"
    " (id, step, kind, payload, order_key, order_slots, available_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: An outbox row numbered after every seq handed out: the newest outbox row (dispatch keeps the newest row it
#: consumed, or raises the counter to it) and the counter of direct deliveries and emptied outboxes. No write
#: of the counter: a lone write stays as cheap as before direct mode existed.
_NEXT_SEQ = (
    "max(coalesce((SELECT max(seq) FROM motia_state_events), 0),"
    " coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'event_seq'), 0)) + 1"
)
_INSERT_EVENT = (
    "INSERT INTO motia_state_events"
    f" (seq, event_type, scope, key, old_value, new_value, version, timestamp, trace) VALUES ({_NEXT_SEQ},"
    " ?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The seq :data:`_INSERT_EVENT` gives the next outbox row: a group takes it once and numbers its rows on from it.
_NEXT_EVENT_SEQ = f"SELECT {_NEXT_SEQ}"
#: Most outbox rows one ``INSERT`` of a group writes (9 parameters each).
EVENTS_CHUNK = 64
#: The outbox rows of a group by how many one statement writes (a power of two up to :data:`EVENTS_CHUNK`), each
#: ``seq`` and then :data:`_INSERT_EVENT`'s parameters, bound as a group binds them: the values as ``bytearray``
#: and an absent value or ``traceparent`` as an empty one, never ``None`` (each ``bytes`` or ``None`` parameter
#: costs sqlite3's adapter look-up, ~3,000 instructions: see ``connection.blob``). No stored value is empty (it is
#: JSON) and no ``traceparent`` is.
_INSERT_EVENTS = {
    size: "INSERT INTO motia_state_events (seq, event_type, scope, key, old_value, new_value, version, timestamp,"
    " trace) VALUES " + ", ".join(["(?, ?, ?, ?, nullif(?, x''), nullif(?, x''), ?, ?, nullif(?, ''))"] * size)
    for size in multirow.sizes(EVENTS_CHUNK)
}
_EMPTY = bytearray()
#: The ``triggers`` number (positive: direct mode) and whether any event waits in the outbox (beyond the
#: cursor: consumed rows before it may stay).
MODE = (
    "SELECT (SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'triggers'),"
    " EXISTS (SELECT 1 FROM motia_state_events WHERE seq >"
    " coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'outbox_cursor'), 0))"
)
#: Takes the next ``?`` seqs for direct deliveries, after every outbox row too.
_NEXT_SEQS = (
    "UPDATE motia_meta SET value = max(CAST(value AS INTEGER), coalesce((SELECT max(seq) FROM motia_state_events), 0))"
    " + ? WHERE name = 'event_seq' RETURNING CAST(value AS INTEGER)"
)
#: Events a transaction records at least to make their deliveries itself (see :func:`record`).
DIRECT_MIN_EVENTS = 2
#: The seq counter of a file made before it: it goes on from the newest event the outbox ever held.
INIT_EVENT_SEQ = (
    "INSERT OR IGNORE INTO motia_meta (name, value)"
    " SELECT 'event_seq', CAST(coalesce(max(seq), 0) AS TEXT) FROM motia_state_events"
)
_SUBSCRIPTIONS = "SELECT step, scope, key FROM motia_subscriptions"


def delivery_rows(deliveries: Sequence[NewDelivery], now: float) -> list[tuple[object, ...]]:
    """The parameters of :data:`_INSERT_DELIVERY` for ``deliveries`` added at ``now``.

    A ``bytes`` payload is bound as a ``bytearray`` (a copy), which Python 3.11's sqlite3 binds at once, where
    ``bytes`` first goes through its adapter look-ups (about 3,000 instructions a parameter; see
    ``connection.blob``). Anything else is bound as it is, so that what cannot be bound fails in the statement,
    as a store error naming the parameter."""
    return [
        (
            d.id,
            d.step,
            d.kind,
            bytearray(d.payload) if type(d.payload) is bytes else d.payload,
            d.order_key,
            d.order_slots,
            now + d.delay,
            now,
        )
        for d in deliveries
    ]


#: Most deliveries one ``INSERT`` of :func:`insert_deliveries` writes (8 parameters each).
INSERT_CHUNK = 32
_INSERT_ROWS = {
    size: _INSERT_DELIVERY + ", (?, ?, ?, ?, ?, ?, ?, ?)" * (size - 1) for size in multirow.sizes(INSERT_CHUNK)
}


def insert_deliveries(connection: sqlite3.Connection, rows: Sequence[tuple[object, ...]]) -> None:
    """Insert ``rows`` (parameters of :data:`_INSERT_DELIVERY`, ignoring an id already there) with a few
    multi-row ``INSERT`` statements instead of one execution per row.

    Each execution of a statement opens a write cursor on the table and on each of its three indexes and
    hands the GIL back and forth around its step; a dispatch round or a direct group of 32 deliveries paid
    that 32 times (issue 15). The chunks are powers of two up to :data:`INSERT_CHUNK` (a round of 31 is
    16 + 8 + 4 + 2 + 1, :mod:`~motia.state.backends.sqlite.multirow`), so that at most six statements ever enter
    the connection's statement cache."""
    for start, size in multirow.chunks(len(rows), INSERT_CHUNK):
        connection.execute(_INSERT_ROWS[size], list(chain.from_iterable(rows[start : start + size])))


def state_delivery_rows(
    subscriptions: Sequence[Subscription], events: Sequence[Sequence[Any]], now: float
) -> list[tuple[object, ...]]:
    """The parameters of :data:`_INSERT_DELIVERY` for the deliveries of ``events`` (each ``(seq, *Event)``)
    to ``subscriptions``, made at ``now``: what :func:`delivery_rows` of
    :func:`~motia.state.backends._events.state_deliveries` gives, without a ``NewDelivery`` per delivery
    between them nor a second pass (a dispatch round and a direct group run this per event, issue 15). The
    payload is bound as a ``bytearray``, as :func:`delivery_rows` binds it."""
    rows: list[tuple[object, ...]] = []
    for seq, event_type, scope, key, old, new, version, timestamp, trace in events:
        payload = ordering = None
        for subscription in subscriptions:
            if subscribed(subscription, scope, key):
                if payload is None:
                    payload = bytearray(
                        state_event_payload(seq, event_type, scope, key, old, new, version, timestamp, trace)
                    )
                    ordering = order_key(scope, key)
                step = subscription.step
                rows.append((f"state:{seq}:{step}", step, "state", payload, ordering, 1, now, now))
    return rows


def registered(connection: sqlite3.Connection) -> list[Subscription]:
    """Every subscription registered with the store."""
    return [Subscription(step, scope or None, key or None) for step, scope, key in connection.execute(_SUBSCRIPTIONS)]


def set_mode(connection: sqlite3.Connection, direct: bool) -> int:
    """Mark the subscriptions changed (a new number), in direct mode or not; return the number."""
    number = secrets.randbits(62) + 1
    if not direct:
        number = -number
    connection.execute("INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('triggers', ?)", (str(number),))
    return number


def current_mode(connection: sqlite3.Connection) -> int:
    row = connection.execute("SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'triggers'").fetchone()
    return int(row[0]) if row is not None else 0


class Subscribers:
    """One process's copy of ``motia_subscriptions``, valid while ``motia_meta``'s ``triggers`` number is
    the one it was read under. Shared by the transactions of one backend, on any thread: the pair is
    replaced whole, never changed in place."""

    __slots__ = ("_cached", "outbox_writes")

    def __init__(self) -> None:
        self._cached: tuple[int, list[Subscription]] = (0, [])
        #: Transactions of this backend that wrote outbox rows (committed or not): a dispatch must look.
        self.outbox_writes = 0

    def get(self, connection: sqlite3.Connection, number: int) -> list[Subscription]:
        cached_number, subscriptions = self._cached
        if cached_number != number:
            subscriptions = registered(connection)
            self._cached = (number, subscriptions)
        return subscriptions


def record(connection: sqlite3.Connection, subscribers: Subscribers, events: Sequence[Event], now: float) -> bool:
    """Record ``events`` (in commit order) in the current transaction: as deliveries in direct mode, else as
    outbox rows. Returns whether anything was written that workers or the dispatcher should wake for.

    Direct only for a group of events, and with nothing waiting in the outbox (those deliveries must come
    first: per-key order). A lone event's outbox row costs one B-tree page where its delivery costs four
    (the table and its three indexes) and the seq counter one more, on every commit; the dispatch that
    later moves a burst of lone events inserts their deliveries side by side, a few pages for them all. So
    one write at a time goes through the outbox, dispatched in bursts; group commits (concurrent writers)
    make their deliveries themselves.
    """
    if len(events) >= DIRECT_MIN_EVENTS:
        number, waiting = connection.execute(MODE).fetchone()
        if number is not None and number > 0 and not waiting:
            return _record_direct(connection, subscribers.get(connection, number), events, now)
    subscribers.outbox_writes += 1
    if len(events) == 1:
        connection.execute(_INSERT_EVENT, events[0])
    else:
        # One statement per event cost ~6k instructions more per event (its step, binding, the GIL handed back and
        # forth, its seq's subqueries): a few multi-row statements instead, as insert_deliveries does (issue 15).
        seq = connection.execute(_NEXT_EVENT_SEQ).fetchone()[0]
        params: list[Any] = []
        for event_type, scope, key, old, new, version, timestamp, trace in events:
            params += (
                seq,
                event_type,
                scope,
                key,
                _EMPTY if old is None else bytearray(old),
                _EMPTY if new is None else bytearray(new),
                version,
                timestamp,
                trace or "",
            )
            seq += 1
        for start, size in multirow.chunks(len(events), EVENTS_CHUNK):
            connection.execute(_INSERT_EVENTS[size], params[start * 9 : (start + size) * 9])
    return True


def _record_direct(
    connection: sqlite3.Connection, subscriptions: Sequence[Subscription], events: Sequence[Event], now: float
) -> bool:
    row = connection.execute(_NEXT_SEQS, (len(events),)).fetchone()
    if row is None:  # a file whose counter was never made (it is made with the schema): make it now
        connection.execute(INIT_EVENT_SEQ)
        row = connection.execute(_NEXT_SEQS, (len(events),)).fetchone()
    first = row[0] - len(events) + 1
    deliveries = state_delivery_rows(subscriptions, [(seq, *event) for seq, event in enumerate(events, first)], now)
    if not deliveries:
        return False
    insert_deliveries(connection, deliveries)
    return True
