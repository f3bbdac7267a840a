"""The delivery writes: the outbox dispatch, deliveries and their settling, dead letters, cron tick
claims, named leases and retention. Each runs inside a batch's transaction: ``function(transaction, *args)``.

Claimed cron ticks are rows of ``motia_cron_ticks`` keyed by ``(job, tick)``: ``INSERT OR IGNORE`` picks
the one claim that wins. Named leases are rows of ``motia_leases`` (``name``, ``owner``, ``expires_at``),
taken by one upsert whose ``WHERE`` admits only a free, expired or own lease; ``motia_steps`` holds when
an app last said it serves each step, for retention (``prune``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from motia.state.backends._events import error_text
from motia.state.backends._writes import _tuple, orphaned_error
from motia.state.backends.sqlite.claim import claimable
from motia.state.backends.sqlite.outbox import (
    _INSERT_DELIVERY,
    current_mode,
    delivery_rows,
    insert_deliveries,
    registered,
    set_mode,
    state_delivery_rows,
)
from motia.state.backends.sqlite.transaction import _Transaction
from motia.state.backends.types import Delivery, NewDelivery, PruneResult, Subscription

#: Forgotten cron tick claims are deleted at most this often (seconds), by the claim that comes next.
TICK_PRUNE_INTERVAL = 60.0

#: Deliveries per ``… IN (…)`` statement of a claim or a bulk completion (well under SQLite's limit of
#: bound parameters).
COMPLETE_CHUNK = 500

#: The events after the cursor (consumed rows before it may stay), oldest first: a page of the outbox.
_OUTBOX_PAGE = (
    "SELECT seq, event_type, scope, key, old_value, new_value, version, timestamp, trace FROM motia_state_events"
    " WHERE seq > coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'outbox_cursor'), 0)"
    " ORDER BY seq LIMIT ?"
)


#: Consumed outbox rows are deleted once the oldest row is this many seqs behind the newest consumed one.
CLEAR_OUTBOX_AFTER = 1024
#: ... or at once, by a round whose events carry more than this many bytes of values each on average: so the
#: consumed rows kept hold at most about ``CLEAR_OUTBOX_AFTER`` times this (1 MiB), however big values are
#: (a value may be up to ``max_value_bytes``, 1 MiB by default, and an event holds two).
CLEAR_OUTBOX_EVENT_BYTES = 1024
_CURSOR = "INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('outbox_cursor', ?)"
#: The cursor and the seq counter after a round that emptied the outbox: both at its newest event (the seq
#: counter never goes down: direct deliveries may have taken seqs beyond the outbox's).
_DRAINED = (
    "INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('outbox_cursor', ?1),"
    " ('event_seq', max(?1, coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'event_seq'), 0)))"
)


def _value_bytes(rows: Sequence[Sequence[Any]]) -> int:
    """The bytes of old and new values in outbox ``rows`` (as :data:`_OUTBOX_PAGE` reads them)."""
    return sum(len(row[4] or b"") + len(row[5] or b"") for row in rows)


def _events_flag(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT value FROM motia_meta WHERE name = 'events'").fetchone()
    return row is not None and row[0] == "on"


def _write_enable_events(tx: _Transaction) -> None:
    tx.connection.execute("INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('events', 'on')")


def _write_dispatch(tx: _Transaction, subscriptions: Sequence[Subscription], limit: int) -> tuple[int, int]:
    """Register ``subscriptions``, move up to ``limit`` outbox events to deliveries, and switch the store to
    direct mode (groups of events make their deliveries themselves, see
    :mod:`~motia.state.backends.sqlite.outbox`) once some subscription is registered. Returns the events
    consumed and the ``triggers`` number now current (positive: direct mode).

    One writer beside a trigger runs this every few writes (issue 15), so a round reads what it needs and no
    more: the subscriptions from the backend's copy while the ``triggers`` number is the one it was read
    under (every change of ``motia_subscriptions`` writes a new one), registering only those the copy lacks,
    and the cursor inside the read of the events."""
    tx.flush()  # this batch's own events first
    connection = tx.connection
    mode = current_mode(connection)
    # No number yet (a file older than it, or a store never dispatched): the copy cannot be trusted.
    subscribed = tx.subscribers.get(connection, mode) if mode else registered(connection)
    added = False
    if subscriptions and not set(subscriptions).issubset(subscribed):  # a no-op (no page written) once registered
        before = connection.total_changes
        connection.executemany(
            "INSERT OR IGNORE INTO motia_subscriptions (step, scope, key) VALUES (?, ?, ?)",
            [(s.step, s.scope or "", s.key or "") for s in subscriptions],
        )
        added = connection.total_changes > before
        if added:
            subscribed = registered(connection)
    rows = connection.execute(_OUTBOX_PAGE, (limit,)).fetchall()
    if rows:
        deliveries = state_delivery_rows(subscribed, rows, tx.now)
        if deliveries:
            insert_deliveries(connection, deliveries)
            tx.notify = True
        last = rows[-1][0]
        # Consumed rows stay (every reader skips them: seq > cursor) until they span CLEAR_OUTBOX_AFTER seqs (or
        # a round's values are big: see CLEAR_OUTBOX_EVENT_BYTES), then go together: deleting a round's rows one
        # by one, each delete rebalancing the B-tree's leaves, was ~9,000 instructions per event (issue 15). The
        # newest consumed row stays while events may wait after it (a full page): new outbox rows are numbered
        # after it (and after the direct deliveries' counter), so delivery ids built from seq are never reused.
        oldest = connection.execute("SELECT min(seq) FROM motia_state_events").fetchone()[0]
        if last - oldest < CLEAR_OUTBOX_AFTER and _value_bytes(rows) <= CLEAR_OUTBOX_EVENT_BYTES * len(rows):
            connection.execute(_CURSOR, (last,))
        elif len(rows) < limit:
            # The round read every waiting event (under the write lock: none can come in meanwhile), so the
            # table holds consumed rows only: emptied whole, which SQLite does page by page, not row by row,
            # and ``event_seq`` raised to the newest, which new outbox rows are numbered after.
            connection.execute("DELETE FROM motia_state_events")
            connection.execute(_DRAINED, (last,))
        else:
            connection.execute("DELETE FROM motia_state_events WHERE seq < ?", (last,))
            connection.execute(_CURSOR, (last,))
    # Direct mode while some subscription is registered (a group of events still goes to the outbox while
    # events wait there, so per-key order holds: see outbox.record).
    direct = bool(subscribed)
    if (mode > 0) != direct or (added and direct):
        mode = set_mode(connection, direct)
    return len(rows), mode


def _write_enqueue(tx: _Transaction, deliveries: Sequence[NewDelivery]) -> int:
    before = tx.connection.total_changes
    tx.connection.executemany(_INSERT_DELIVERY, delivery_rows(deliveries, tx.now))
    added = tx.connection.total_changes - before
    tx.notify = tx.notify or added > 0
    return added


def _write_add_dead_letters(tx: _Transaction, deliveries: Sequence[NewDelivery], error: str) -> int:
    before = tx.connection.total_changes
    tx.connection.executemany(
        "INSERT OR IGNORE INTO motia_dead_letters"
        " (id, step, kind, payload, attempts, error, created_at, failed_at, first_error)"
        " SELECT ?, ?, ?, ?, 0, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM motia_deliveries WHERE id = ?)",
        [(new.id, new.step, new.kind, new.payload, error, tx.now, tx.now, error, new.id) for new in deliveries],
    )
    return tx.connection.total_changes - before


def _write_claim(tx: _Transaction, steps: Sequence[str], owner: str, limit: int, lease: float) -> list[Delivery]:
    rows = claimable(tx.connection, steps, tx.now, limit)
    for start in range(0, len(rows), COMPLETE_CHUNK):  # one statement per chunk, not one per delivery
        chunk = rows[start : start + COMPLETE_CHUNK]
        tx.connection.execute(
            "UPDATE motia_deliveries SET owner = ?, lease_until = ?, attempts = attempts + 1"
            f" WHERE seq IN ({','.join('?' * len(chunk))})",
            (owner, tx.now + lease, *(row[6] for row in chunk)),
        )
    # Each row is the Delivery (this attempt counted) and its seq: the Delivery made without its Python __new__.
    return [_tuple(Delivery, row[:6]) for row in rows]


def _write_extend(tx: _Transaction, ids: Sequence[str], owner: str, lease: float) -> None:
    tx.connection.executemany(
        "UPDATE motia_deliveries SET lease_until = ? WHERE id = ? AND owner = ?",
        [(tx.now + lease, delivery_id, owner) for delivery_id in ids],
    )


def _write_settle(tx: _Transaction, delivery_id: str, owner: str, outcome: str, delay: float, error: str) -> bool:
    """Complete, retry, postpone or dead-letter a delivery, if ``owner`` still holds it."""
    row = tx.connection.execute(
        "SELECT step, kind, payload, attempts, created_at, first_error FROM motia_deliveries"
        " WHERE id = ? AND owner = ?",
        (delivery_id, owner),
    ).fetchone()
    if row is None:
        return False
    if outcome in ("retry", "postpone"):
        # A postponed delivery's claim is not an attempt: its count goes back to what it was. A retried
        # one keeps its error as the last, and as the first when it had none.
        uncount = ", attempts = MAX(attempts - 1, 0)" if outcome == "postpone" else ""
        text = error_text(error) if outcome == "retry" else None
        errors = ", last_error = ?, first_error = coalesce(first_error, ?)" if text is not None else ""
        tx.connection.execute(
            "UPDATE motia_deliveries SET owner = NULL, lease_until = 0, available_at = ?"
            f"{uncount}{errors} WHERE id = ?",
            (tx.now + delay, *((text, text) if text is not None else ()), delivery_id),
        )
        return True
    tx.connection.execute("DELETE FROM motia_deliveries WHERE id = ?", (delivery_id,))
    if outcome == "dead":
        text = error_text(error)
        tx.connection.execute(
            "INSERT OR REPLACE INTO motia_dead_letters (id, step, kind, payload, attempts, error, created_at,"
            " failed_at, first_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (delivery_id, *row[:4], text, row[4], tx.now, row[5] or text),
        )
    tx.notify = True  # a later delivery of the same key may be ready now
    return True


def _complete_sql(count: int, returning: bool = True) -> str:
    """The statement completing ``count`` deliveries (naming those it deleted, or not: ``returning``), kept for
    the usual flush sizes (made per flush otherwise)."""
    sql = _COMPLETE_SQL.get((count, returning))
    if sql is None:
        sql = f"DELETE FROM motia_deliveries WHERE owner = ? AND id IN ({','.join('?' * count)})"
        if returning:
            sql += " RETURNING id"
        if count <= 64:
            _COMPLETE_SQL[count, returning] = sql
    return sql


_COMPLETE_SQL: dict[tuple[int, bool], str] = {}


def _complete_chunk(execute: Callable[..., sqlite3.Cursor], ids: Sequence[str], owner: str) -> set[str]:
    """Complete the deliveries of ``ids`` (distinct, at most :data:`COMPLETE_CHUNK`) that ``owner`` holds.

    Counted, not returned (issue 15): the delete runs without ``RETURNING``, inside a ``SAVEPOINT`` of its own, and
    when its count of deleted rows says every delivery was still held (the usual case) the savepoint is released:
    all were completed. ``RETURNING`` cost about 5,000 instructions per row (SQLite keeps the rows aside, Python
    fetches each), the savepoint two statements per completion, cheaper from one delivery on (callgrind, worker
    alone and end to end). When some lease had expired (or an id is unknown), the delete is rolled back to the
    savepoint and made again with ``RETURNING``, which names the completed ones.
    """
    count = len(ids)
    execute("SAVEPOINT motia_complete")
    if execute(_complete_sql(count, returning=False), (owner, *ids)).rowcount == count:
        execute("RELEASE motia_complete")
        return set(ids)
    execute("ROLLBACK TO motia_complete")
    execute("RELEASE motia_complete")
    return {row[0] for row in execute(_complete_sql(count), (owner, *ids))}


def _write_complete_many(tx: _Transaction, ids: Sequence[str], owner: str) -> set[str]:
    """Complete every delivery of ``ids`` (distinct) that ``owner`` holds: one statement per chunk, not two per
    id."""
    execute = tx.connection.execute
    if len(ids) <= COMPLETE_CHUNK:  # the usual flush: one chunk
        done = _complete_chunk(execute, ids, owner)
    else:
        done = set()
        for start in range(0, len(ids), COMPLETE_CHUNK):
            done |= _complete_chunk(execute, ids[start : start + COMPLETE_CHUNK], owner)
    if done:
        tx.notify = True  # later deliveries of the same keys may be ready now
    return done


def _write_complete_and_claim(
    tx: _Transaction, ids: Sequence[str], owner: str, steps: Sequence[str], limit: int, lease: float
) -> tuple[set[str], list[Delivery]]:
    """The worker's round in one transaction: one commit instead of two (issue 15)."""
    done = _write_complete_many(tx, ids, owner) if ids else set()
    return done, _write_claim(tx, steps, owner, limit, lease) if steps and limit > 0 else []


def _write_claim_tick(tx: _Transaction, job: str, tick: int, hold: float, prune: bool) -> bool:
    if prune:  # a full scan, but of at most ``hold`` seconds of ticks, once a minute
        tx.connection.execute("DELETE FROM motia_cron_ticks WHERE expires_at <= ?", (tx.now,))
    cursor = tx.connection.execute(
        "INSERT OR IGNORE INTO motia_cron_ticks (job, tick, expires_at) VALUES (?, ?, ?)", (job, tick, tx.now + hold)
    )
    return cursor.rowcount == 1


def _write_acquire_lease(tx: _Transaction, name: str, owner: str, ttl: float) -> bool:
    # One statement: the row is taken when absent, expired or already ours; else the upsert's WHERE
    # leaves it alone and changes no row.
    cursor = tx.connection.execute(
        "INSERT INTO motia_leases (name, owner, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
        " WHERE motia_leases.owner = excluded.owner OR motia_leases.expires_at <= ?",
        (name, owner, tx.now + ttl, tx.now),
    )
    return cursor.rowcount == 1


def _write_release_lease(tx: _Transaction, name: str, owner: str) -> bool:
    cursor = tx.connection.execute(
        "DELETE FROM motia_leases WHERE name = ? AND owner = ? AND expires_at > ?", (name, owner, tx.now)
    )
    return cursor.rowcount == 1


def _write_touch_steps(tx: _Transaction, steps: Sequence[str]) -> None:
    tx.connection.executemany(
        "INSERT INTO motia_steps (step, seen_at) VALUES (?, ?)"
        " ON CONFLICT (step) DO UPDATE SET seen_at = max(seen_at, excluded.seen_at)",
        [(step, tx.now) for step in steps],
    )


def _write_prune(tx: _Transaction, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
    removed = forgotten = orphaned = 0
    unsubscribed = False
    if dead_letter_age is not None:
        removed = tx.connection.execute(
            "DELETE FROM motia_dead_letters WHERE failed_at < ?", (tx.now - dead_letter_age,)
        ).rowcount
    if step_age is None:
        return PruneResult(removed, 0, 0)
    stale = tx.connection.execute(
        "SELECT step, seen_at FROM motia_steps WHERE seen_at < ?", (tx.now - step_age,)
    ).fetchall()
    waiting = "step = ? AND (owner IS NULL OR lease_until <= ?)"  # a lease that has expired is waiting too
    for step, seen_at in stale:
        orphaned += tx.connection.execute(
            "INSERT OR REPLACE INTO motia_dead_letters"
            " (id, step, kind, payload, attempts, error, created_at, failed_at, first_error)"
            " SELECT id, step, kind, payload, attempts, ?1, created_at, ?2, coalesce(first_error, ?1)"
            " FROM motia_deliveries WHERE step = ?3 AND (owner IS NULL OR lease_until <= ?2)",
            (orphaned_error(step, seen_at), tx.now, step),
        ).rowcount
        tx.connection.execute(f"DELETE FROM motia_deliveries WHERE {waiting}", (step, tx.now))
        if tx.connection.execute("DELETE FROM motia_subscriptions WHERE step = ?", (step,)).rowcount:
            unsubscribed = True
        tx.connection.execute("DELETE FROM motia_stream_subscriptions WHERE step = ?", (step,))
        if tx.connection.execute("SELECT 1 FROM motia_deliveries WHERE step = ? LIMIT 1", (step,)).fetchone() is None:
            tx.connection.execute("DELETE FROM motia_steps WHERE step = ?", (step,))
            forgotten += 1
    if unsubscribed:  # writes must stop delivering to those steps: a new number, so every copy is read again
        set_mode(tx.connection, current_mode(tx.connection) > 0 and bool(registered(tx.connection)))
    tx.notify = tx.notify or orphaned > 0
    return PruneResult(removed, forgotten, orphaned)


def _write_cap_dead_letters(tx: _Transaction, limit: int) -> int:
    """Delete the dead letters beyond the newest ``limit`` (by failure time, then id: the listing's order)."""
    return tx.connection.execute(
        "DELETE FROM motia_dead_letters WHERE id IN"
        " (SELECT id FROM motia_dead_letters ORDER BY failed_at DESC, id DESC LIMIT -1 OFFSET ?)",
        (limit,),
    ).rowcount
