"""SQLite state: the embedded default. One file, many processes, acknowledged = committed.

Layout: one row per ``(scope, key)`` in a ``WITHOUT ROWID`` table whose primary key is ``(scope, key)``,
so a point lookup, a write and a page of ``items`` each cost a B-tree seek plus the rows touched, however
large the scope grows. Values are stored as encoded JSON blobs; a per-key ``version`` and an optional
``expires_at`` (Unix seconds, filtered in every ``SELECT``) live beside them. Change events can be
written to ``motia_state_events`` in the same transaction as the write (the transactional outbox).
Claimed cron ticks are rows of ``motia_cron_ticks`` keyed by ``(job, tick)``: ``INSERT OR IGNORE`` picks
the one claim that wins. Named leases are rows of ``motia_leases`` (``name``, ``owner``, ``expires_at``),
taken by one upsert whose ``WHERE`` admits only a free, expired or own lease; ``motia_steps`` holds when
an app last said it serves each step, for retention (``prune``).

Concurrency and the event loop:

* Writes are queued per event loop and *group committed*: everything queued during one loop iteration
  runs in one ``BEGIN IMMEDIATE`` … ``COMMIT``, and each caller is answered only after that commit. A
  call that raises fails alone and leaves nothing behind (an undo log for its buffered changes, a
  ``SAVEPOINT`` for the statements it ran); the rest of its batch commits.
* The commit runs on the loop thread itself when the write lock is free: the attempt uses
  ``busy_timeout=0``, so it never waits on another process, and with ``synchronous=NORMAL`` a WAL commit
  does not fsync. If the lock is taken, the batch moves to a worker thread, which waits with a deadline
  (``timeout``) and then raises :class:`StateTimeout`. With ``durability=full`` (fsync per commit) every
  commit runs on a worker thread.
* WAL checkpoints (which do fsync) are taken off the loop thread, in RESTART mode so the WAL stays
  bounded under a steady write load; the loop thread's connection has automatic checkpoints disabled.
* Point reads and small pages read on the loop thread (WAL readers never wait for writers; a thread
  hop would cost ten times the read). Whole-scope reads run on a worker thread.

Why not one writer thread: handing each write to a thread and back costs more than the commit itself
(measured in ``bench/state_bench.py``), and throughput under concurrency comes from group commit, not
from threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from motia.exceptions import (
    ConfigError,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateError,
    StateTimeout,
    StateValueError,
)
from motia.state.backends._events import error_text, state_deliveries
from motia.state.backends._writes import (
    check_age,
    check_lease,
    check_lease_ttl,
    check_steps,
    check_version,
    orphaned_error,
    plan_restore,
    plan_set,
    plan_transaction_write,
    plan_update,
)
from motia.state.backends.base import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Record,
    StateBackend,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.ops import Operation
from motia.state.values import prefix_upper_bound

logger = logging.getLogger("motia.state")

#: 1: state, outbox and delivery tables. 2: ``motia_cron_ticks``. 3: ``motia_leases`` and ``motia_steps``
#: (named leases, retention). Every table is created ``IF NOT EXISTS`` at open, which upgrades an older
#: file in place; the stored version then stops an older pymotia from opening it (it would run cron ticks
#: without claiming them, or a cron job without its lease, so twice beside newer instances).
SCHEMA_VERSION = 3

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS motia_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    """CREATE TABLE IF NOT EXISTS motia_state (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        expires_at REAL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS motia_state_expiry ON motia_state (expires_at) WHERE expires_at IS NOT NULL",
    # No AUTOINCREMENT (its sqlite_sequence update is one more page written per commit): seq stays
    # monotonic because dispatch always keeps the newest row it consumed (see _write_dispatch).
    """CREATE TABLE IF NOT EXISTS motia_state_events (
        seq INTEGER PRIMARY KEY,
        event_type TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        old_value BLOB,
        new_value BLOB,
        version INTEGER NOT NULL,
        timestamp REAL NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS motia_deliveries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        step TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        order_key TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        available_at REAL NOT NULL,
        owner TEXT,
        lease_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS motia_deliveries_step ON motia_deliveries (step, seq)",
    # Every state-trigger subscription any app registered ('' = any scope/key): dispatch serves them all.
    """CREATE TABLE IF NOT EXISTS motia_subscriptions (
        step TEXT NOT NULL,
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (step, scope, key)
    ) WITHOUT ROWID""",
    """CREATE INDEX IF NOT EXISTS motia_deliveries_order ON motia_deliveries (step, order_key, seq)
        WHERE order_key IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS motia_dead_letters (
        id TEXT PRIMARY KEY,
        step TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        attempts INTEGER NOT NULL,
        error TEXT NOT NULL,
        created_at REAL NOT NULL,
        failed_at REAL NOT NULL
    )""",
    # Claimed cron ticks (schema version 2); tick in whole milliseconds, so every process agrees.
    """CREATE TABLE IF NOT EXISTS motia_cron_ticks (
        job TEXT NOT NULL,
        tick INTEGER NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (job, tick)
    ) WITHOUT ROWID""",
    # Named leases (schema version 3): one owner at a time until expires_at (Unix seconds).
    """CREATE TABLE IF NOT EXISTS motia_leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID""",
    # When an app last said it serves each step (touch_steps), so prune can tell renamed steps (version 3).
    "CREATE TABLE IF NOT EXISTS motia_steps (step TEXT PRIMARY KEY, seen_at REAL NOT NULL) WITHOUT ROWID",
    # Retention deletes dead letters by age, and dead_letters() lists them by failure time (version 3).
    "CREATE INDEX IF NOT EXISTS motia_dead_letters_failed ON motia_dead_letters (failed_at)",
)

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_SELECT_ONE = "SELECT value, version, expires_at FROM motia_state WHERE scope = ? AND key = ?"
_UPSERT = (
    "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " value = excluded.value, version = excluded.version, expires_at = excluded.expires_at"
)
_DELETE = "DELETE FROM motia_state WHERE scope = ? AND key = ?"
_INSERT_EVENT = (
    "INSERT INTO motia_state_events (event_type, scope, key, old_value, new_value, version, timestamp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
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

#: Writes committed together at most; bounds how long one flush holds the loop.
MAX_BATCH = 256
#: Page sizes up to this are read on the loop thread; larger ones on a worker thread.
INLINE_PAGE_LIMIT = 1000
#: A clear recording events writes them in chunks of at most this many rows or (about) bytes of values.
CLEAR_CHUNK_ROWS = 500
CLEAR_CHUNK_BYTES = 1 << 20
#: Expired keys swept per write batch, at most once per ``sweep_interval``.
SWEEP_BATCH = 256
#: Forgotten cron tick claims are deleted at most this often (seconds), by the claim that comes next.
TICK_PRUNE_INTERVAL = 60.0
#: Checkpoint the WAL from a worker thread after this many rows written (each is at least one WAL
#: frame, so this matches SQLite's own default of a checkpoint per 1,000 pages).
CHECKPOINT_WRITES = 1000
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
#: Opening retries a busy set-up step after this pause (seconds), doubling up to the maximum.
OPEN_RETRY_PAUSE = 0.002
OPEN_RETRY_PAUSE_MAX = 0.1


SQLITE_READONLY = 8


def _error_code(exc: sqlite3.Error) -> int | None:
    """The primary result code of ``exc`` (extended codes such as SQLITE_BUSY_RECOVERY folded into theirs)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock."""
    return _error_code(exc) in _BUSY_CODES or "locked" in str(exc)


class _Busy(Exception):
    """The write lock is held elsewhere; retry on a thread that may wait."""


_UNSEEN: Any = object()
#: Marks an undo-log entry for a flush: the buffers as they were before it.
_FLUSHED: Any = object()

#: Bumped in a child process after fork: connections opened before it must not be used there.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


class _Transaction:
    """The writes of one batch, on one connection, inside one ``BEGIN IMMEDIATE``.

    Rows are read once (a batch prefetches its keys with one query per scope), changed in Python and
    written back at commit with ``executemany``: a group of writes costs little more than one.

    Each call of a batch can be undone on its own (:meth:`begin_call` … :meth:`undo_call`): while a call
    runs, every change to the buffers is logged, so a call that raises leaves them as they were before it,
    and the other calls of the batch still commit. (Statements a call executes itself are undone by a
    ``SAVEPOINT``, see :meth:`SQLiteBackend._run_call`.)
    """

    __slots__ = ("connection", "now", "record_events", "notify", "_known", "_dirty", "_events", "_undo", "_mark")

    def __init__(self, connection: sqlite3.Connection, now: float, record_events: bool) -> None:
        self.connection = connection
        self.now = now
        self.record_events = record_events
        #: Whether local workers should be woken after the commit (events or deliveries changed).
        self.notify = False
        #: The live record of every key this transaction has looked at (``None``: absent), as of now.
        self._known: dict[tuple[str, str], Record | None] = {}
        #: What to write at commit: the final record of each changed key (``None``: delete the row).
        self._dirty: dict[tuple[str, str], Record | None] = {}
        self._events: list[tuple[str, str, str, bytes | None, bytes | None, int, float]] = []
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
        if row is not None:
            data, version, expires_at = row
            if expires_at is not None and expires_at <= self.now:
                self._set(self._dirty, (scope, key), None)
                self.event("expired", scope, key, data, None, version)
            else:
                record = Record(key, data, version, expires_at)
        self._set(self._known, (scope, key), record)
        return record

    def store(self, scope: str, record: Record, old_data: bytes | None) -> None:
        self._set(self._known, (scope, record.key), record)
        self._set(self._dirty, (scope, record.key), record)
        event_type = "created" if old_data is None else "updated"
        self.event(event_type, scope, record.key, old_data, record.data, record.version)

    def remove(self, scope: str, current: Record) -> None:
        self._set(self._known, (scope, current.key), None)
        self._set(self._dirty, (scope, current.key), None)
        self.event("deleted", scope, current.key, current.data, None, current.version)

    def event(self, event_type: str, scope: str, key: str, old: bytes | None, new: bytes | None, version: int) -> None:
        if self.record_events:
            self._events.append((event_type, scope, key, old, new, version, self.now))
            self.notify = True

    def forget_scope(self, scope: str) -> None:
        """Every key of ``scope`` is gone (after a clear)."""
        for pair in [pair for pair in self._known if pair[0] == scope]:
            self._set(self._known, pair, None)

    def flush(self) -> None:
        """Write the changed rows and the events (before COMMIT, or before a statement that reads rows)."""
        if self._undo is not None and (self._dirty or self._events):
            # Both buffers are swapped out below, not changed: keeping them is enough to restore them.
            self._undo.append((_FLUSHED, self._dirty, self._events))
        if self._dirty:
            dirty, self._dirty = self._dirty, {}
            upserts = [
                (scope, key, record.data, record.version, record.expires_at)
                for (scope, key), record in dirty.items()
                if record is not None
            ]
            deletes = [pair for pair, record in dirty.items() if record is None]
            if len(upserts) == 1:  # the common single write: execute is cheaper than executemany
                self.connection.execute(_UPSERT, upserts[0])
            elif upserts:
                self.connection.executemany(_UPSERT, upserts)
            if deletes:
                self.connection.executemany(_DELETE, deletes)
        if self._events:
            events, self._events = self._events, []
            self.connection.executemany(_INSERT_EVENT, events)


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


#: Writes whose first two arguments are the ``(scope, key)`` they touch: a batch prefetches those rows.
_KEYED_WRITES = (_write_set, _write_update, _write_delete, _write_restore)
#: Writes that only read rows and buffer their changes in the transaction (they execute no write
#: statement until the batch's final flush), so undoing their buffered changes undoes them.
_BUFFERED_WRITES = (*_KEYED_WRITES, _write_commit)


def _write_clear(tx: _Transaction, scope: str) -> int:
    """Delete every row of ``scope``. Values are read only when events need them, and then streamed in
    chunks straight into the outbox, so clearing a large scope never holds its values in memory."""
    tx.flush()
    connection = tx.connection
    if not tx.record_events:
        live: int = connection.execute(
            f"SELECT count(*) FROM motia_state WHERE scope = ? AND {_LIVE}", (scope, tx.now)
        ).fetchone()[0]
    else:
        live = removed = size = 0
        events: list[tuple[str, str, str, bytes | None, bytes | None, int, float]] = []
        rows = connection.execute("SELECT key, value, version, expires_at FROM motia_state WHERE scope = ?", (scope,))
        for key, data, version, expires_at in rows:  # one row at a time from SQLite, in key order
            expired = expires_at is not None and expires_at <= tx.now
            live += not expired
            removed += 1
            events.append(("expired" if expired else "deleted", scope, key, data, None, version, tx.now))
            size += len(data)
            if size >= CLEAR_CHUNK_BYTES or len(events) >= CLEAR_CHUNK_ROWS:
                connection.executemany(_INSERT_EVENT, events)
                events, size = [], 0
        if events:
            connection.executemany(_INSERT_EVENT, events)
        tx.notify = tx.notify or removed > 0
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


# -- delivery -----------------------------------------------------------------------------------------

_INSERT_DELIVERY = (
    "INSERT OR IGNORE INTO motia_deliveries (id, step, kind, payload, order_key, available_at, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_CLAIMABLE = """
    SELECT d.seq, d.id, d.step, d.kind, d.payload, d.attempts, d.created_at FROM motia_deliveries d
    WHERE d.step IN ({steps}) AND d.available_at <= ? AND (d.owner IS NULL OR d.lease_until <= ?)
    AND (d.order_key IS NULL OR NOT EXISTS (
        SELECT 1 FROM motia_deliveries e WHERE e.step = d.step AND e.order_key = d.order_key AND e.seq < d.seq
    ))
    ORDER BY d.seq LIMIT ?"""


def _events_flag(connection: sqlite3.Connection) -> bool:
    row = connection.execute("SELECT value FROM motia_meta WHERE name = 'events'").fetchone()
    return row is not None and row[0] == "on"


def _write_enable_events(tx: _Transaction) -> None:
    tx.connection.execute("INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('events', 'on')")


def _write_dispatch(tx: _Transaction, subscriptions: Sequence[Subscription], limit: int) -> int:
    tx.flush()  # this batch's own events first
    if subscriptions:  # a no-op (no page written) once registered
        tx.connection.executemany(
            "INSERT OR IGNORE INTO motia_subscriptions (step, scope, key) VALUES (?, ?, ?)",
            [(s.step, s.scope or "", s.key or "") for s in subscriptions],
        )
    cursor_row = tx.connection.execute("SELECT value FROM motia_meta WHERE name = 'outbox_cursor'").fetchone()
    cursor = int(cursor_row[0]) if cursor_row is not None else 0
    rows = tx.connection.execute(
        "SELECT seq, event_type, scope, key, old_value, new_value, version, timestamp FROM motia_state_events"
        " WHERE seq > ? ORDER BY seq LIMIT ?",
        (cursor, limit),
    ).fetchall()
    if not rows:
        return 0
    registered = [
        Subscription(step, scope or None, key or None)
        for step, scope, key in tx.connection.execute("SELECT step, scope, key FROM motia_subscriptions")
    ]
    deliveries = [delivery for row in rows for delivery in state_deliveries(registered, *row)]
    if deliveries:
        tx.connection.executemany(_INSERT_DELIVERY, [(*delivery, tx.now, tx.now) for delivery in deliveries])
        tx.notify = True
    last = rows[-1][0]
    # Keep the newest consumed row: new events then get larger seqs than any before (rowid rule), so
    # delivery ids built from seq are never reused. The cursor says it is consumed.
    tx.connection.execute("DELETE FROM motia_state_events WHERE seq < ?", (last,))
    tx.connection.execute("INSERT OR REPLACE INTO motia_meta (name, value) VALUES ('outbox_cursor', ?)", (str(last),))
    return len(rows)


def _write_enqueue(tx: _Transaction, deliveries: Sequence[NewDelivery]) -> int:
    before = tx.connection.total_changes
    tx.connection.executemany(_INSERT_DELIVERY, [(*delivery, tx.now, tx.now) for delivery in deliveries])
    added = tx.connection.total_changes - before
    tx.notify = tx.notify or added > 0
    return added


def _write_claim(tx: _Transaction, steps: Sequence[str], owner: str, limit: int, lease: float) -> list[Delivery]:
    rows = tx.connection.execute(
        _CLAIMABLE.format(steps=",".join("?" * len(steps))), (*steps, tx.now, tx.now, limit)
    ).fetchall()
    if rows:
        tx.connection.executemany(
            "UPDATE motia_deliveries SET owner = ?, lease_until = ?, attempts = attempts + 1 WHERE seq = ?",
            [(owner, tx.now + lease, row[0]) for row in rows],
        )
    return [
        Delivery(delivery_id, step, kind, payload, attempts + 1, created_at)
        for _, delivery_id, step, kind, payload, attempts, created_at in rows
    ]


def _write_extend(tx: _Transaction, ids: Sequence[str], owner: str, lease: float) -> None:
    tx.connection.executemany(
        "UPDATE motia_deliveries SET lease_until = ? WHERE id = ? AND owner = ?",
        [(tx.now + lease, delivery_id, owner) for delivery_id in ids],
    )


def _write_settle(tx: _Transaction, delivery_id: str, owner: str, outcome: str, delay: float, error: str) -> bool:
    """Complete, retry or dead-letter a delivery, if ``owner`` still holds it."""
    row = tx.connection.execute(
        "SELECT step, kind, payload, attempts, created_at FROM motia_deliveries WHERE id = ? AND owner = ?",
        (delivery_id, owner),
    ).fetchone()
    if row is None:
        return False
    if outcome == "retry":
        tx.connection.execute(
            "UPDATE motia_deliveries SET owner = NULL, lease_until = 0, available_at = ? WHERE id = ?",
            (tx.now + delay, delivery_id),
        )
        return True
    tx.connection.execute("DELETE FROM motia_deliveries WHERE id = ?", (delivery_id,))
    if outcome == "dead":
        tx.connection.execute(
            "INSERT OR REPLACE INTO motia_dead_letters"
            " (id, step, kind, payload, attempts, error, created_at, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (delivery_id, *row[:4], error_text(error), row[4], tx.now),
        )
    tx.notify = True  # a later delivery of the same key may be ready now
    return True


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
            " (id, step, kind, payload, attempts, error, created_at, failed_at)"
            f" SELECT id, step, kind, payload, attempts, ?, created_at, ? FROM motia_deliveries WHERE {waiting}",
            (orphaned_error(step, seen_at), tx.now, step, tx.now),
        ).rowcount
        tx.connection.execute(f"DELETE FROM motia_deliveries WHERE {waiting}", (step, tx.now))
        tx.connection.execute("DELETE FROM motia_subscriptions WHERE step = ?", (step,))
        if tx.connection.execute("SELECT 1 FROM motia_deliveries WHERE step = ? LIMIT 1", (step,)).fetchone() is None:
            tx.connection.execute("DELETE FROM motia_steps WHERE step = ?", (step,))
            forgotten += 1
    tx.notify = tx.notify or orphaned > 0
    return PruneResult(removed, forgotten, orphaned)


class _Call:
    """One write to run inside a batch's transaction: ``function(transaction, *args)``."""

    __slots__ = ("function", "args")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args


class _Request(_Call):
    """A queued write: its caller awaits ``future``, answered after the batch commits."""

    __slots__ = ("future", "heavy")

    def __init__(
        self, function: Callable[..., Any], args: tuple[Any, ...], future: asyncio.Future[Any], heavy: bool
    ) -> None:
        super().__init__(function, args)
        self.future = future
        self.heavy = heavy


class _LoopWriter:
    """Group commit for one event loop: queue writes, flush them together, answer after commit."""

    def __init__(self, backend: SQLiteBackend, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.pending: list[_Request] = []
        self.scheduled = False
        self.in_thread = False  # a batch is committing on a worker thread; keep commit order

    def submit(self, request: _Request) -> None:
        self.pending.append(request)
        if not self.scheduled and not self.in_thread:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        taken = self.pending[:MAX_BATCH]
        del self.pending[:MAX_BATCH]
        if self.pending:
            self.scheduled = True
            self.loop.call_soon(self.flush)
        # A caller cancelled before its commit started: skip it, so nothing unacknowledged is written.
        batch = [request for request in taken if not request.future.cancelled()]
        if len(batch) < len(taken):
            self.backend._finished(len(taken) - len(batch))
        if not batch:
            return
        backend = self.backend
        if backend._inline_writes and not any(request.heavy for request in batch):
            try:
                outcomes = backend._run_batch(backend._connection(inline=True), batch)
            except _Busy:
                pass
            except BaseException as exc:  # noqa: BLE001 - every caller must hear about it
                self._answer_all(batch, exc)
                return
            else:
                self._answer(batch, outcomes)
                backend._after_commit(len(batch))
                return
        self.in_thread = True
        self.scheduled = True  # hold further flushes until this batch is answered: commit order
        future = self.loop.run_in_executor(backend._executor, backend._run_batch_blocking, batch)
        future.add_done_callback(lambda done: self._thread_done(done, batch))

    def _thread_done(self, done: asyncio.Future[list[Any]], batch: list[_Request]) -> None:
        self.in_thread = False
        self.scheduled = False
        exc = done.exception()
        if exc is not None:
            self._answer_all(batch, exc)
        else:
            self._answer(batch, done.result())
            self.backend._after_commit(len(batch))
        if self.pending:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def _answer(self, batch: list[_Request], outcomes: list[Any]) -> None:
        for request, outcome in zip(batch, outcomes, strict=True):
            if request.future.cancelled():
                continue
            if isinstance(outcome, _Failure):
                request.future.set_exception(outcome.error)
            else:
                request.future.set_result(outcome)
        self.backend._finished(len(batch))

    def _answer_all(self, batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.future.cancelled():
                request.future.set_exception(exc)
        self.backend._finished(len(batch))


class _Failure:
    """The outcome of a call that raised: its caller gets ``error``; the rest of the batch committed."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class SQLiteBackend(StateBackend):
    """State in one SQLite file, shared safely by every thread and process that opens it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: str = "normal",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        sweep_interval: float = 5.0,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ConfigError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.path = Path(path).expanduser().absolute()
        self.url = f"sqlite:///{self.path}" + ("?durability=full" if durability == "full" else "")
        self.durability = durability
        self.timeout = timeout
        #: Whether writes record change events: a flag kept in the file, so every process agrees.
        self._events_enabled = False
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._last_sweep = 0.0
        self._ticks_pruned = 0.0
        self._inline_writes = durability == "normal"
        self._synchronous = "FULL" if durability == "full" else "NORMAL"
        self._forks = _forks[0]
        self._local = threading.local()
        #: Every open connection, with the thread it belongs to (closed once that thread has ended).
        self._connections: dict[sqlite3.Connection, threading.Thread] = {}
        self._lock = threading.Lock()
        self._drain = threading.Condition(self._lock)
        #: Group commit per event loop; a closed loop's writer is released when the next loop's is made.
        self._writers: dict[asyncio.AbstractEventLoop, _LoopWriter] = {}
        self._outstanding = 0
        self._closed = False
        self._writes_since_checkpoint = 0
        self._checkpointing = False
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="motia-sqlite")
        try:
            self._open()
        except BaseException:
            self._close_connections()
            self._executor.shutdown(wait=False)
            raise

    # -- connections ------------------------------------------------------------------------------

    def _open(self) -> None:
        """Create the file and schema, or fail with the absolute path: never a silent empty store."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateBackendUnavailable(
                f"cannot create the directory for the state file {self.path}: {exc}"
            ) from None
        if self.path.is_dir():
            raise StateBackendUnavailable(f"the state path {self.path} is a directory, not a SQLite file")
        connection = self._connection(inline=False)
        deadline = time.monotonic() + self.timeout
        pause = OPEN_RETRY_PAUSE
        while True:
            try:
                self._create_schema(connection)
                return
            except sqlite3.Error as exc:
                self._rollback(connection)
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._translate(exc, opening=True) from exc
            # Busy without the busy handler being asked to wait (SQLite does that where waiting could
            # deadlock): another process is creating or upgrading the file. Try again shortly.
            time.sleep(pause)
            pause = min(pause * 2, OPEN_RETRY_PAUSE_MAX)

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        """Create or upgrade the tables, unless the file is already at this schema version.

        The check runs first, without the write lock: opening a store that is in use (every open but
        the first) then never waits behind, or competes with, the processes writing to it.
        """
        try:
            row = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            row = None  # a new file
        if row is not None and int(row[0]) == SCHEMA_VERSION:
            return
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                connection.execute(statement)
            row = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO motia_meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise StateBackendUnavailable(
                    f"the state file {self.path} has schema version {row[0]}, newer than this pymotia "
                    f"understands ({SCHEMA_VERSION}); upgrade pymotia"
                )
            elif int(row[0]) < SCHEMA_VERSION:  # the statements above added what it lacked
                connection.execute(
                    "UPDATE motia_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),)
                )
                logger.info("upgraded the state file %s to schema version %d", self.path, SCHEMA_VERSION)
            connection.execute("COMMIT")
        except BaseException:
            self._rollback(connection)
            raise

    def _connection(self, *, inline: bool) -> sqlite3.Connection:
        if self._forks != _forks[0]:  # forked: never share a connection with the parent
            self._after_fork()
        attribute = "inline" if inline else "blocking"
        connection: sqlite3.Connection | None = getattr(self._local, attribute, None)
        if connection is not None:
            return connection
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")
        connection = self._connect(inline)
        setattr(self._local, attribute, connection)
        with self._lock:
            ended = [(known, thread) for known, thread in self._connections.items() if not thread.is_alive()]
            for known, _ in ended:
                del self._connections[known]
            self._connections[connection] = threading.current_thread()
        for known, thread in ended:
            # Its thread has ended (a script's short-lived thread, say), so nothing uses it any more: without
            # this, every thread that ever used the store would keep a connection (a file descriptor) open.
            logger.debug("closing the connection of ended thread %s to %s", thread.name, self.path)
            known.close()
        return connection

    def _connect(self, inline: bool) -> sqlite3.Connection:
        """Open and set up a connection, waiting out other processes that are creating or writing the file.

        Some set-up steps meet a lock the busy timeout does not cover: SQLite answers "database is
        locked" at once, without waiting, to a switch to WAL while another process creates the file, or
        while it recovers the WAL. Those are retried until ``timeout``. An inline connection (made on
        the event loop thread, which must not wait) raises :class:`_Busy` instead: its caller moves the
        work to a worker thread, which waits.
        """
        deadline = time.monotonic() + self.timeout
        pause = OPEN_RETRY_PAUSE
        while True:
            connection = sqlite3.connect(
                self.path,
                timeout=0 if inline else self.timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=64,
            )
            try:
                self._set_up(connection, inline)
                return connection
            except sqlite3.Error as exc:
                connection.close()
                if not _is_busy(exc):
                    raise self._translate(exc, opening=True) from exc
                if inline:
                    raise _Busy from None
                if time.monotonic() >= deadline:
                    raise self._translate(exc, opening=True) from exc
            except BaseException:
                connection.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, OPEN_RETRY_PAUSE_MAX)

    def _set_up(self, connection: sqlite3.Connection, inline: bool) -> None:
        # The mode is read first (it reads the header, so a corrupt file fails here, before any write),
        # and switched only when needed: switching takes a lock, which a store in use should not need.
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StateBackendUnavailable(f"cannot switch the state file {self.path} to WAL mode (got {mode!r})")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute("PRAGMA cache_size=-16000")
        if inline:
            connection.execute("PRAGMA wal_autocheckpoint=0")

    def _after_fork(self) -> None:
        self._forks = _forks[0]
        self._local = threading.local()
        self._connections = {}
        self._lock = threading.Lock()
        self._drain = threading.Condition(self._lock)
        self._writers = {}
        self._outstanding = 0
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="motia-sqlite")

    def _translate(self, exc: sqlite3.Error | UnicodeEncodeError, *, opening: bool = False) -> StateError:
        if isinstance(exc, UnicodeEncodeError):  # sqlite3 binds str as UTF-8: a lone surrogate cannot be
            return StateValueError(f"a text argument contains a lone surrogate and is not valid UTF-8 ({exc})")
        message = str(exc)
        if _is_busy(exc):
            return StateTimeout(
                f"the state file {self.path} stayed locked for more than {self.timeout:g} s ({message})"
            )
        if opening or isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
            return StateBackendUnavailable(f"cannot open the state file {self.path}: {message}")
        return StateBackendError(f"state file {self.path}: {message}")

    # -- writes -----------------------------------------------------------------------------------

    async def _write(self, function: Callable[..., Any], *args: Any, heavy: bool = False) -> Any:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise StateClosedError(f"the state store {self.url} is closed")
            self._outstanding += 1
            writer = self._writers.get(loop)
            if writer is None:
                # A closed loop never runs again (asyncio.run() per call makes and closes one each time):
                # release its writer, so the writers are bounded by the loops alive at once.
                for closed in [known for known in self._writers if known.is_closed()]:
                    del self._writers[closed]
                writer = self._writers[loop] = _LoopWriter(self, loop)
        if (
            self._inline_writes
            and not heavy
            and not writer.pending
            and not writer.in_thread
            and not getattr(loop, "_ready", True)
        ):
            # Nothing else is ready to run on this loop, so no other write could join a batch: commit
            # this one now, a batch of one, without a round trip through the loop. (``_ready`` is
            # asyncio's queue of runnable callbacks; other loops lack it and always take the queue.)
            try:
                outcome = self._run_batch(self._connection(inline=True), [_Call(function, args)])
            except _Busy:
                pass  # another connection holds the lock: queue it for a thread that may wait
            except BaseException:
                self._finished(1)
                raise
            else:
                self._finished(1)
                if isinstance(outcome[0], _Failure):
                    raise outcome[0].error
                self._after_commit(1)
                return outcome[0]
        future: asyncio.Future[Any] = loop.create_future()
        writer.submit(_Request(function, args, future, heavy))
        return await future

    def _finished(self, count: int) -> None:
        with self._drain:
            self._outstanding -= count
            if self._closed and self._outstanding <= 0:  # only aclose() waits for this
                self._drain.notify_all()

    def _run_batch(self, connection: sqlite3.Connection, batch: Sequence[_Call]) -> list[Any]:
        """Run one batch in one transaction; raise :class:`_Busy` if the write lock is taken.

        Returns one outcome per call: its result, or a :class:`_Failure` for a call that raised (that call
        changed nothing; the others commit). An error outside the calls (``BEGIN``, the final flush,
        ``COMMIT``, or one after which SQLite rolled the whole transaction back) fails the whole batch.
        """
        now = self._clock()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _Busy from None
            raise self._translate(exc) from exc
        outcomes: list[Any] = []
        try:
            if not self._events_enabled:
                # Read under the write lock, in this transaction: a process that enabled events committed
                # before this BEGIN, so this batch sees it and records its events. Once on, the flag never
                # goes off, so the read is paid only while events are off.
                self._events_enabled = _events_flag(connection)
            tx = _Transaction(connection, now, self._events_enabled)
            isolate = len(batch) > 1
            if isolate:
                by_scope: dict[str, list[str]] = {}
                for call in batch:
                    if call.function in _KEYED_WRITES:
                        by_scope.setdefault(call.args[0], []).append(call.args[1])
                for scope, keys in by_scope.items():
                    tx.prefetch(scope, keys)
            for call in batch:
                outcomes.append(self._run_call(tx, call, isolate))
            if now - self._last_sweep >= self._sweep_interval:
                self._last_sweep = now
                _write_purge(tx, SWEEP_BATCH)
            tx.flush()
            connection.execute("COMMIT")
        except BaseException as exc:
            self._rollback(connection)
            if isinstance(exc, sqlite3.Error):
                if _is_busy(exc):
                    raise _Busy from None
                if _error_code(exc) == SQLITE_READONLY:
                    # SQLite opens a file it cannot write read-only, and the connection stays so: drop it,
                    # so that writes work again (on a new connection) once the file is writable again.
                    self._discard(connection)
                raise self._translate(exc) from exc
            if isinstance(exc, UnicodeEncodeError):
                raise self._translate(exc) from exc
            raise
        if tx.notify:
            self._notify_listeners()
        return outcomes

    def _run_call(self, tx: _Transaction, call: _Call, isolate: bool) -> Any:
        """Run one call of a batch; return its result, or a :class:`_Failure` if it raised.

        A failed call changes nothing, whatever it raised and however far it got: its buffered changes
        are undone (:meth:`_Transaction.undo_call`) and, in a batch of several calls, the statements it
        executed itself are rolled back to a ``SAVEPOINT`` taken before it. (Buffered writes execute no
        statement, so they skip the savepoint; a single call needs none, its batch is rolled back whole.)
        """
        statements = call.function not in _BUFFERED_WRITES
        savepoint = isolate and statements
        connection = tx.connection
        if savepoint:
            connection.execute("SAVEPOINT motia_call")
        tx.begin_call()
        try:
            outcome = call.function(tx, *call.args)
        except Exception as exc:
            if not connection.in_transaction:  # SQLite rolled everything back (disk full, I/O error)
                raise
            if statements and not savepoint:
                raise  # no savepoint to return to: roll the (single-call) batch back
            tx.undo_call()
            if savepoint and not self._roll_back_call(connection):
                raise  # it cannot be taken back alone: the whole batch fails, with this call's own error
            if isinstance(exc, sqlite3.Error | UnicodeEncodeError):
                return _Failure(self._translate(exc))
            return _Failure(exc)
        tx.end_call()
        if savepoint:
            connection.execute("RELEASE motia_call")
        return outcome

    def _roll_back_call(self, connection: sqlite3.Connection) -> bool:
        """Undo the statements of the call that began last; ``False`` (logged) if SQLite could not."""
        try:
            connection.execute("ROLLBACK TO motia_call")
            connection.execute("RELEASE motia_call")
        except sqlite3.Error:
            logger.warning("could not roll back one write on %s", self.path, exc_info=True)
            return False
        return True

    def _rollback(self, connection: sqlite3.Connection) -> None:
        """End a failed transaction without hiding why it failed.

        After some errors (disk full, I/O error) SQLite has already rolled the transaction back: a
        ``ROLLBACK`` then raises "no transaction is active", which would replace the real error. If the
        rollback itself fails, the connection is closed (which rolls back and releases the write lock)
        and the next use opens a new one.
        """
        if not connection.in_transaction:
            return
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            logger.warning("could not roll back on %s; reopening the connection", self.path, exc_info=True)
            self._discard(connection)

    def _discard(self, connection: sqlite3.Connection) -> None:
        """Close one of this thread's connections and forget it (the next use opens a new one)."""
        for attribute in ("inline", "blocking"):
            if getattr(self._local, attribute, None) is connection:
                delattr(self._local, attribute)
        with self._lock:
            self._connections.pop(connection, None)
        connection.close()

    def _run_batch_blocking(self, batch: list[_Request]) -> list[Any]:
        try:
            return self._run_batch(self._connection(inline=False), batch)
        except _Busy:
            raise StateTimeout(f"the state file {self.path} stayed locked for more than {self.timeout:g} s") from None

    def _after_commit(self, writes: int) -> None:
        """Count what was written and start a checkpoint on a worker thread when the WAL is due one."""
        self._writes_since_checkpoint += writes
        if self._closed:  # closing: the executor is (being) shut down; the next open checkpoints
            return
        if self._writes_since_checkpoint >= CHECKPOINT_WRITES and not self._checkpointing:
            self._checkpointing = True
            self._writes_since_checkpoint = 0
            self._executor.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and restart it, on a worker thread.

        RESTART, not PASSIVE: a passive checkpoint racing a steady writer never backfills every frame,
        so the WAL never restarts and grows without bound (seen: 268 MB after 60,000 writes). Nor
        TRUNCATE: regrowing the file made each later commit 10-25% slower. RESTART holds the write
        lock while it runs; meanwhile loop-thread writes find the lock busy and move to a worker thread,
        so the event loop still never waits.
        """
        try:
            self._connection(inline=False).execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except (sqlite3.Error, StateError) as exc:
            # Harmless: a long reader kept it from finishing; it is tried again after more writes.
            logger.warning("WAL checkpoint of %s did not complete: %s", self.path, exc)
        finally:
            self._checkpointing = False

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        result: WriteResult = await self._write(_write_set, scope, key, data, ttl, if_version)
        return result

    async def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> WriteResult:
        result: WriteResult = await self._write(_write_update, scope, key, operations, ttl, if_version, max_value_bytes)
        return result

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        result: bytes | None = await self._write(_write_delete, scope, key, if_version)
        return result

    async def clear(self, scope: str) -> int:
        result: int = await self._write(_write_clear, scope, heavy=True)
        return result

    async def purge_expired(self) -> int:
        removed = 0
        while True:
            count: int = await self._write(_write_purge, 10_000, heavy=True)
            removed += count
            if count < 10_000:
                return removed

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        await self._write(_write_commit, dict(expected), tuple(writes))

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        written: bool = await self._write(_write_restore, scope, key, data, version, expires_at, replace)
        return written

    # -- delivery ---------------------------------------------------------------------------------

    async def enable_events(self) -> None:
        await self._write(_write_enable_events)
        self._events_enabled = True

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        consumed: int = await self._write(_write_dispatch, tuple(subscriptions), limit)
        return consumed

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        if not deliveries:
            return 0
        added: int = await self._write(_write_enqueue, tuple(deliveries))
        return added

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        if not steps or limit <= 0:
            return []
        claimed: list[Delivery] = await self._write(_write_claim, tuple(steps), owner, limit, lease)
        return claimed

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        if ids:
            await self._write(_write_extend, tuple(ids), owner, lease)

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        done: bool = await self._write(_write_settle, delivery_id, owner, "complete", 0.0, "")
        return done

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        done: bool = await self._write(_write_settle, delivery_id, owner, "retry", delay, error)
        return done

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        done: bool = await self._write(_write_settle, delivery_id, owner, "dead", 0.0, error)
        return done

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        now = self._clock()
        prune = now - self._ticks_pruned >= TICK_PRUNE_INTERVAL
        if prune:
            self._ticks_pruned = now
        claimed: bool = await self._write(_write_claim_tick, job, tick_millis(tick), hold, prune)
        return claimed

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        check_lease(name, owner)
        acquired: bool = await self._write(_write_acquire_lease, name, owner, check_lease_ttl(ttl))
        return acquired

    async def release_lease(self, name: str, owner: str) -> bool:
        check_lease(name, owner)
        released: bool = await self._write(_write_release_lease, name, owner)
        return released

    async def touch_steps(self, steps: Sequence[str]) -> None:
        names = check_steps(steps)
        if names:
            await self._write(_write_touch_steps, tuple(names))

    async def prune(self, *, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        if dead_letter_age is None and step_age is None:
            return PruneResult(0, 0, 0)
        result: PruneResult = await self._write(_write_prune, dead_letter_age, step_age, heavy=True)
        return result

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        sql = "SELECT id, step, kind, payload, attempts, error, created_at, failed_at FROM motia_dead_letters"
        parameters: tuple[Any, ...] = (limit,)
        if step is not None:
            sql += " WHERE step = ?"
            parameters = (step, limit)
        rows = await self._read(sql + " ORDER BY failed_at, id LIMIT ?", parameters, inline=False)
        return [DeadLetter(*row) for row in rows]

    async def pending(self, step: str | None = None) -> int:
        if step is None:
            rows = await self._read("SELECT count(*) FROM motia_deliveries", (), inline=False)
        else:
            rows = await self._read("SELECT count(*) FROM motia_deliveries WHERE step = ?", (step,), inline=False)
        return int(rows[0][0])

    # -- reads ------------------------------------------------------------------------------------

    def _query(self, inline: bool, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")
        try:
            return self._connection(inline=inline).execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if inline and _is_busy(exc):
                raise _Busy from None
            raise self._translate(exc) from exc
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise self._translate(exc) from exc

    async def _read(self, sql: str, parameters: tuple[Any, ...], *, inline: bool) -> list[Any]:
        if inline:
            try:
                return self._query(True, sql, parameters)
            except _Busy:
                pass  # rare in WAL (recovery after a crash): wait for it on a worker thread
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._query, False, sql, parameters)

    async def get(self, scope: str, key: str) -> Record | None:
        rows = await self._read(
            f"SELECT value, version, expires_at FROM motia_state WHERE scope = ? AND key = ? AND {_LIVE}",
            (scope, key, self._clock()),
            inline=True,
        )
        if not rows:
            return None
        data, version, expires_at = rows[0]
        return Record(key, data, version, expires_at)

    async def values(self, scope: str) -> list[bytes]:
        rows = await self._read(
            f"SELECT value FROM motia_state WHERE scope = ? AND {_LIVE} ORDER BY key",
            (scope, self._clock()),
            inline=False,
        )
        return [row[0] for row in rows]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        if limit == 0:
            return []
        if prefix and not _is_utf8(prefix):
            return []  # no key holds a lone surrogate, so none starts with this prefix
        sql = "SELECT key, value, version, expires_at FROM motia_state WHERE scope = ?"
        parameters: list[Any] = [scope]
        if after is not None:
            if _is_utf8(after):
                sql += " AND key > ?"
                parameters.append(after)
            else:
                # sqlite3 binds str as strict UTF-8; a lone surrogate encoded as its code point's bytes
                # ("surrogatepass") and read back as TEXT sorts by code point among the keys, as on
                # every backend (keys compare as UTF-8 bytes, which is code point order).
                sql += " AND key > CAST(? AS TEXT)"
                parameters.append(after.encode("utf-8", "surrogatepass"))
        if prefix:
            sql += " AND key >= ?"
            parameters.append(prefix)
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                sql += " AND key < ?"
                parameters.append(upper)
        sql += f" AND {_LIVE} ORDER BY key"
        parameters.append(self._clock())
        if limit is not None:
            sql += " LIMIT ?"
            parameters.append(limit)
        inline = limit is not None and limit <= INLINE_PAGE_LIMIT
        rows = await self._read(sql, tuple(parameters), inline=inline)
        return [Record(key, data, version, expires_at) for key, data, version, expires_at in rows]

    async def count(self, scope: str) -> int:
        rows = await self._read(
            f"SELECT count(*) FROM motia_state WHERE scope = ? AND {_LIVE}", (scope, self._clock()), inline=False
        )
        return int(rows[0][0])

    async def scopes(self) -> list[str]:
        rows = await self._read(_SCOPES, (self._clock(),), inline=False)
        return [row[0] for row in rows]

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        await asyncio.get_running_loop().run_in_executor(None, self._drain_and_stop)
        self._close_connections()

    def _drain_and_stop(self) -> None:
        """Wait for pending writes, then for the worker threads (checkpoints, reads) to finish.

        Connections are closed only after this: closing a SQLite connection that another thread is
        using is undefined behaviour (it crashed the interpreter once, during a checkpoint).
        """
        deadline = time.monotonic() + self.timeout + 5
        with self._drain:
            while self._outstanding and time.monotonic() < deadline:
                self._drain.wait(0.05)
        self._executor.shutdown(wait=True)

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            connection.close()
        self._local = threading.local()
