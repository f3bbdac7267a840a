"""The SQLite file's schema: its tables, their version, and creating or upgrading them when a file is opened.

Layout: one row per ``(scope, key)`` in a ``WITHOUT ROWID`` table whose primary key is ``(scope, key)``,
so a point lookup, a write and a page of ``items`` each cost a B-tree seek plus the rows touched, however
large the scope grows. Values are stored as encoded JSON blobs; a per-key ``version`` and an optional
``expires_at`` (Unix seconds, filtered in every ``SELECT``) live beside them. Change events can be
written to ``motia_state_events`` in the same transaction as the write (the transactional outbox).
Claimed cron ticks are rows of ``motia_cron_ticks`` keyed by ``(job, tick)``: ``INSERT OR IGNORE`` picks
the one claim that wins. Named leases are rows of ``motia_leases`` (``name``, ``owner``, ``expires_at``),
taken by one upsert whose ``WHERE`` admits only a free, expired or own lease; ``motia_steps`` holds when
an app last said it serves each step, for retention (``prune``).

Streams (schema version 4) live in tables of their own, apart from the state scopes: items in
``motia_stream_items`` keyed by ``(stream, grp, item)``; one row per group in ``motia_stream_groups`` with
its ``seq`` counter (kept after the group empties, so a seq never repeats; a row retention removes
raises ``motia_meta``'s ``stream_seq_floor``, where a new group counts on from), its live item count (groups
and stream names list only non-empty groups without scanning items), the ``history`` its newest change
asked for and its oldest change still logged (seq, position, timestamp); the change log
``motia_stream_changes``, whose rowid is the store-wide ``position`` (see
:mod:`~motia.state.backends.sqlite.streams` for why it increases in commit order); and the stream-trigger
subscriptions.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

from motia.exceptions import StateBackendUnavailable
from motia.state.backends.sqlite.outbox import INIT_EVENT_SEQ

logger = logging.getLogger("motia.state")

#: 1: state, outbox and delivery tables. 2: ``motia_cron_ticks``. 3: ``motia_leases`` and ``motia_steps``
#: (named leases, retention). Every table is created ``IF NOT EXISTS`` at open, which upgrades an older
#: file in place; the stored version then stops an older pymotia from opening it (it would run cron ticks
#: without claiming them, or a cron job without its lease, so twice beside newer instances). 4: the
#: stream tables (an older pymotia would write state but miss stream triggers and changes). 5:
#: ``motia_deliveries`` without ``AUTOINCREMENT`` (see :func:`_drop_autoincrement`). 6: the
#: ``trace`` column of ``motia_state_events`` (the writer's ``traceparent``, carried to the deliveries). 7:
#: ``motia_deliveries.order_slots`` (keyed concurrency: an older pymotia would lease one delivery of such a
#: key at a time, and ignore the limit of the others). 8 (dead letters you can operate, issue 18;
#: self-contained: renumber freely): the errors of a delivery's failed attempts (``first_error`` and
#: ``last_error`` of ``motia_deliveries``, ``first_error`` of ``motia_dead_letters``). 9 (state-trigger
#: deliveries made in the write's transaction, issue 15; self-contained: renumber freely): ``motia_meta``'s
#: ``event_seq`` counter, from which every event takes its seq (an older pymotia would number outbox rows by
#: rowid, behind the counter, and reuse delivery ids), see :mod:`~motia.state.backends.sqlite.outbox`. 10
#: (a claim behind a hot key, issue 15; self-contained: renumber freely): the ``(step, order_key, seq)`` index
#: of ``motia_deliveries`` holds the unordered deliveries too, as ``motia_deliveries_key``, so a claim finds
#: them without reading the backlog (an older pymotia would make its partial ``motia_deliveries_order`` again
#: beside it, every ordered delivery then written to both).
SCHEMA_VERSION = 10

#: Columns added to existing tables after their creation, by version: ``(table, column, definition)``.
#: ``CREATE TABLE IF NOT EXISTS`` creates them in a new file; :func:`create_schema` adds each missing one
#: to an older file (``ALTER TABLE ... ADD COLUMN`` has no ``IF NOT EXISTS``).
_ADDED_COLUMNS = (
    ("motia_deliveries", "order_slots", "INTEGER NOT NULL DEFAULT 1"),
    ("motia_deliveries", "first_error", "TEXT"),
    ("motia_deliveries", "last_error", "TEXT"),
    ("motia_dead_letters", "first_error", "TEXT"),
)

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
    # monotonic because dispatch keeps the newest row it consumed, or raises motia_meta's event_seq to it
    # when it empties the table (see _write_dispatch).
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
    # No AUTOINCREMENT (schema version 5): a new delivery's seq is max(seq) + 1, larger than every
    # delivery waiting, which is all that order needs (per key: older seq first); a seq reused once its
    # delivery is gone is harmless (ids are the delivery's identity). Saves the sqlite_sequence page.
    """CREATE TABLE IF NOT EXISTS motia_deliveries (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        step TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload BLOB NOT NULL,
        order_key TEXT,
        order_slots INTEGER NOT NULL DEFAULT 1,
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
    # Every delivery, the unordered ones first (order_key NULL) (schema version 10): a claim behind a hot key
    # finds each key's oldest deliveries and the unordered ones here, not by reading the backlog (see
    # motia.state.backends.sqlite.claim). Versions 1-9 had it partial (WHERE order_key IS NOT NULL), named
    # motia_deliveries_order: dropped.
    "DROP INDEX IF EXISTS motia_deliveries_order",
    "CREATE INDEX IF NOT EXISTS motia_deliveries_key ON motia_deliveries (step, order_key, seq)",
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
    # Streams (version 4). Items, in id order within a group (code point order: BINARY on UTF-8).
    """CREATE TABLE IF NOT EXISTS motia_stream_items (
        stream TEXT NOT NULL,
        grp TEXT NOT NULL,
        item TEXT NOT NULL,
        value BLOB NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (stream, grp, item)
    ) WITHOUT ROWID""",
    # One row per group ever changed: its seq counter, live items, the history its newest change asked
    # for, and the oldest change still in the log: its seq (``oldest <= seq - history``: changes past the
    # history are kept, see the backlog index), position and timestamp (whether the tail is done with it).
    """CREATE TABLE IF NOT EXISTS motia_stream_groups (
        stream TEXT NOT NULL,
        grp TEXT NOT NULL,
        seq INTEGER NOT NULL,
        items INTEGER NOT NULL,
        history INTEGER NOT NULL,
        oldest INTEGER NOT NULL,
        oldest_position INTEGER NOT NULL,
        oldest_time REAL NOT NULL,
        PRIMARY KEY (stream, grp)
    ) WITHOUT ROWID""",
    # The groups whose log holds changes past their history that the tail needed when last written:
    # the periodic trim visits only these.
    """CREATE INDEX IF NOT EXISTS motia_stream_groups_backlog ON motia_stream_groups (stream, grp)
        WHERE oldest <= seq - history""",
    # No AUTOINCREMENT: position is max(rowid) + 1, monotonic since the newest row is never trimmed.
    """CREATE TABLE IF NOT EXISTS motia_stream_changes (
        position INTEGER PRIMARY KEY,
        stream TEXT NOT NULL,
        grp TEXT NOT NULL,
        item TEXT,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        old_value BLOB,
        new_value BLOB,
        timestamp REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS motia_stream_changes_group ON motia_stream_changes (stream, grp, seq)",
    # Stream triggers of every app on the store (NULL group/item: any), served as a union like state's.
    """CREATE TABLE IF NOT EXISTS motia_stream_subscriptions (
        stream TEXT NOT NULL,
        step TEXT NOT NULL,
        grp TEXT,
        item TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS motia_stream_subscriptions_stream ON motia_stream_subscriptions (stream)",
    "CREATE INDEX IF NOT EXISTS motia_stream_subscriptions_step ON motia_stream_subscriptions (step)",
)


def _add_trace_column(connection: sqlite3.Connection) -> None:
    """Version 5: the outbox keeps the ``traceparent`` of the write that recorded each event (issue 17).
    SQLite has no ``ADD COLUMN IF NOT EXISTS``: the column is added only when missing."""
    columns = {row[1] for row in connection.execute("PRAGMA table_info(motia_state_events)")}
    if "trace" not in columns:
        connection.execute("ALTER TABLE motia_state_events ADD COLUMN trace TEXT")


def create_schema(connection: sqlite3.Connection, path: Path, rollback: Callable[[sqlite3.Connection], None]) -> None:
    """Create or upgrade the tables, unless the file is already at this schema version.

    The check runs first, without the write lock: opening a store that is in use (every open but
    the first) then never waits behind, or competes with, the processes writing to it. ``path`` names the
    file in messages; ``rollback`` ends a failed transaction (the connection's owner knows how).
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
        _drop_autoincrement(connection)
        for statement in _SCHEMA:
            connection.execute(statement)
        _add_trace_column(connection)
        connection.execute(INIT_EVENT_SEQ)
        for table, column, definition in _ADDED_COLUMNS:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column not in present:
                connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
        row = connection.execute("SELECT value FROM motia_meta WHERE name = 'schema_version'").fetchone()
        if row is None:
            connection.execute(
                "INSERT INTO motia_meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise StateBackendUnavailable(
                f"the state file {path} has schema version {row[0]}, newer than this pymotia "
                f"understands ({SCHEMA_VERSION}); upgrade pymotia"
            )
        elif int(row[0]) < SCHEMA_VERSION:  # the statements above added what it lacked
            connection.execute("UPDATE motia_meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
            logger.info("upgraded the state file %s to schema version %d", path, SCHEMA_VERSION)
        connection.execute("COMMIT")
    except BaseException:
        rollback(connection)
        raise


def _drop_autoincrement(connection: sqlite3.Connection) -> None:
    """Rebuild a ``motia_deliveries`` made with ``AUTOINCREMENT`` (schema versions 1-4) without it.

    Its ``sqlite_sequence`` row was one more page written by every commit that added deliveries (issue
    15). The table is copied whole, with its own columns and indexes as the file has them (so this holds
    whatever columns other versions added), inside the caller's transaction; seqs are kept, so the order
    of waiting deliveries is unchanged. A no-op on a new file or one already rebuilt.
    """
    row = connection.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'motia_deliveries'"
    ).fetchone()
    if row is None or "AUTOINCREMENT" not in row[0].upper():
        return
    indexes = [
        sql
        for (sql,) in connection.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'motia_deliveries' AND sql IS NOT NULL"
        )
    ]
    table = re.sub(r"\s+AUTOINCREMENT\b", "", row[0], flags=re.IGNORECASE)
    table = re.sub(
        r"^CREATE TABLE( IF NOT EXISTS)?\s+\"?motia_deliveries\"?", "CREATE TABLE motia_deliveries_v5", table
    )
    connection.execute(table)
    connection.execute("INSERT INTO motia_deliveries_v5 SELECT * FROM motia_deliveries")
    connection.execute("DROP TABLE motia_deliveries")  # its indexes and sqlite_sequence row go with it
    connection.execute("ALTER TABLE motia_deliveries_v5 RENAME TO motia_deliveries")
    for sql in indexes:
        connection.execute(sql)
