"""Streams in SQLite: the stream writes (each run inside a batch's transaction, ``function(transaction,
*args)``), the trimming of the change log, and :class:`SQLiteStreams`, the store's stream methods.

A stream change is one transaction with everything it implies: the item row, the group's ``seq``, the
change row, the trim of the group's log and the stream-trigger deliveries, all in the batch that the
group-commit writer commits (so with the durability of a state write, and batched like one).

``position`` is the change row's rowid. SQLite gives a new row ``max(rowid) + 1`` and serialises writers
(``BEGIN IMMEDIATE``), so positions increase in commit order across every process on the file, provided
the newest row is never deleted: trimming keeps the newest :data:`TAIL_KEEP`, so it never is.

Trimming removes a change only when both the history and the tail are done with it: its ``seq`` is at
least ``history`` behind its group's, it is not among the newest :data:`TAIL_KEEP` positions, and it is
older than :data:`TAIL_AGE` seconds. Each write trims its own group, oldest first, at most
:data:`TRIM_PER_WRITE` rows (a seek on the ``(stream, grp, seq)`` index). What the tail still needed then
is left for the periodic pass (:func:`_trim_backlog`, every :data:`TRIM_INTERVAL` seconds), which visits
only the groups marked as having such a backlog (a partial index), a bounded number per pass.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from motia.exceptions import StateConflictError
from motia.state.backends._events import stream_deliveries
from motia.state.backends._waiters import CommitWaiters
from motia.state.backends.sqlite.outbox import _INSERT_DELIVERY, delivery_rows
from motia.state.backends.sqlite.transaction import _Transaction
from motia.state.backends.types import Record, StreamChange, StreamTriggerSubscription

#: The tail keeps every change younger than this (seconds) and at least the newest TAIL_KEEP.
TAIL_AGE = 60.0
TAIL_KEEP = 10_000
#: A write trims at most this many old changes of its group.
TRIM_PER_WRITE = 8
#: The periodic trim runs at most this often (seconds), visiting at most TRIM_GROUPS groups and removing
#: at most TRIM_BUDGET changes in all: a few milliseconds added to one write batch.
TRIM_INTERVAL = 5.0
TRIM_GROUPS = 64
TRIM_BUDGET = 1000
#: How often a waiting tail looks for the commits of other processes (seconds).
TAIL_POLL = 0.015

_CHANGE_COLUMNS = "position, stream, grp, item, seq, kind, old_value, new_value, timestamp"
_INSERT_CHANGE = (
    "INSERT INTO motia_stream_changes (stream, grp, item, seq, kind, old_value, new_value, timestamp)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SAVE_GROUP = (
    "INSERT INTO motia_stream_groups (stream, grp, seq, items, history, oldest, oldest_position, oldest_time)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (stream, grp) DO UPDATE SET seq = excluded.seq,"
    " items = excluded.items, history = excluded.history, oldest = excluded.oldest,"
    " oldest_position = excluded.oldest_position, oldest_time = excluded.oldest_time"
)
_TRIM = (
    "DELETE FROM motia_stream_changes WHERE position IN ("
    " SELECT position FROM motia_stream_changes WHERE stream = ? AND grp = ? AND seq <= ? ORDER BY seq LIMIT ?"
    ") AND position <= ? AND timestamp < ?"
)
_OLDEST = "SELECT seq, position, timestamp FROM motia_stream_changes WHERE stream = ? AND grp = ? ORDER BY seq LIMIT 1"
#: The largest seq of a group retention forgot (absent: none was): a group starts counting after it.
_SEQ_FLOOR = "(SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'stream_seq_floor')"
#: The group's seq, read in the same statement (so the same read transaction) as its items or changes; an
#: absent group's is the floor.
_GROUP_SEQ = f"coalesce((SELECT seq FROM motia_stream_groups WHERE stream = ?1 AND grp = ?2), {_SEQ_FLOOR}, 0)"
_RAISE_FLOOR = (
    "INSERT INTO motia_meta (name, value) VALUES ('stream_seq_floor', ?) ON CONFLICT (name) DO UPDATE"
    " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))"
)
#: Stream changes one transaction of the age retention removes at most.
PRUNE_BATCH = 5000
_SNAPSHOT = (
    f"SELECT {_GROUP_SEQ}, item, value, version FROM motia_stream_items WHERE stream = ?1 AND grp = ?2{{item}}"
    " ORDER BY item"
)
#: The seq of a group found empty, with whether it still is (the same read transaction).
_EMPTY_SNAPSHOT = (
    f"SELECT {_GROUP_SEQ}, EXISTS (SELECT 1 FROM motia_stream_items WHERE stream = ?1 AND grp = ?2{{item}})"
)
_HISTORY = (
    f"SELECT {_GROUP_SEQ}, {_CHANGE_COLUMNS} FROM motia_stream_changes"
    " WHERE stream = ?1 AND grp = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4"
)


def _record_change(
    tx: _Transaction,
    stream: str,
    group: str,
    item: str | None,
    kind: str,
    old: bytes | None,
    new: bytes | None,
    history: int,
    items_delta: int,
) -> StreamChange:
    """Number the change, log it, trim the group's log, save the group and make the deliveries."""
    connection = tx.connection
    row = connection.execute(
        "SELECT seq, items, oldest, oldest_position, oldest_time FROM motia_stream_groups WHERE stream = ? AND grp = ?",
        (stream, group),
    ).fetchone()
    if row is None:  # a new group, or one retention forgot: count on after the floor
        seq = connection.execute(f"SELECT coalesce({_SEQ_FLOOR}, 0) + 1").fetchone()[0]
    else:
        seq = row[0] + 1
    cursor = connection.execute(_INSERT_CHANGE, (stream, group, item, seq, kind, old, new, tx.now))
    position = cursor.lastrowid
    assert position is not None
    if row is None:
        items, oldest = 0, (seq, position, tx.now)
    else:
        items, oldest = row[1], row[2:]
    # Changes past the history are logged and the tail is done with the oldest: trim, oldest first. (The
    # oldest's position and time are kept with the group, so a write whose trim would find nothing to
    # remove skips it.)
    if oldest[0] <= seq - history and oldest[1] <= position - TAIL_KEEP and oldest[2] < tx.now - TAIL_AGE:
        connection.execute(
            _TRIM, (stream, group, seq - history, TRIM_PER_WRITE, position - TAIL_KEEP, tx.now - TAIL_AGE)
        )
        oldest = connection.execute(_OLDEST, (stream, group)).fetchone()
    connection.execute(_SAVE_GROUP, (stream, group, seq, items + items_delta, history, *oldest))
    change = StreamChange(position, stream, group, item, seq, kind, old, new, tx.now)
    subscriptions = [
        StreamTriggerSubscription(step, stream, sub_group, sub_item)
        for step, sub_group, sub_item in connection.execute(
            "SELECT step, grp, item FROM motia_stream_subscriptions WHERE stream = ?", (stream,)
        )
    ]
    deliveries = stream_deliveries(subscriptions, change, tx.trace)
    if deliveries:
        connection.executemany(_INSERT_DELIVERY, delivery_rows(deliveries, tx.now))
        tx.notify = True
    tx.streamed = True
    return change


def _write_stream(
    tx: _Transaction, stream: str, group: str, item: str, data: bytes | None, if_version: int | None, history: int
) -> StreamChange | None:
    connection = tx.connection
    row = connection.execute(
        "SELECT value, version FROM motia_stream_items WHERE stream = ? AND grp = ? AND item = ?",
        (stream, group, item),
    ).fetchone()
    old, version = (None, 0) if row is None else row
    if if_version is not None and if_version != version:
        raise StateConflictError(
            f"stream {stream!r} item {group!r}/{item!r} is at version {version}, not {if_version}",
            expected=if_version,
            actual=version,
        )
    if data is None:
        if row is None:
            return None
        connection.execute(
            "DELETE FROM motia_stream_items WHERE stream = ? AND grp = ? AND item = ?", (stream, group, item)
        )
        return _record_change(tx, stream, group, item, "delete", old, None, history, -1)
    connection.execute(
        "INSERT INTO motia_stream_items (stream, grp, item, value, version) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (stream, grp, item) DO UPDATE SET value = excluded.value, version = excluded.version",
        (stream, group, item, data, version + 1),
    )
    kind = "create" if row is None else "update"
    return _record_change(tx, stream, group, item, kind, old, data, history, 1 if row is None else 0)


def _write_stream_send(
    tx: _Transaction, stream: str, group: str, item: str | None, event: bytes, history: int
) -> StreamChange:
    return _record_change(tx, stream, group, item, "event", None, event, history, 0)


def _write_stream_subscriptions(tx: _Transaction, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
    # ``IS`` matches NULL (any group or item) too: registering again adds no row.
    tx.connection.executemany(
        "INSERT INTO motia_stream_subscriptions (stream, step, grp, item) SELECT ?, ?, ?, ? WHERE NOT EXISTS ("
        " SELECT 1 FROM motia_stream_subscriptions WHERE stream = ? AND step = ? AND grp IS ? AND item IS ?)",
        [(s.stream, s.step, s.group, s.item) * 2 for s in dict.fromkeys(subscriptions)],
    )


def _trim_backlog(tx: _Transaction, after: tuple[str, str]) -> tuple[str, str]:
    """Trim the groups with a backlog (the periodic pass), from the group after ``after`` on; return
    where the next pass starts, so that groups whose backlog the tail still needs cannot starve others."""
    connection = tx.connection
    newest = connection.execute("SELECT max(position) FROM motia_stream_changes").fetchone()[0]
    if newest is None:
        return ("", "")
    groups = connection.execute(
        "SELECT stream, grp, seq, history FROM motia_stream_groups WHERE oldest <= seq - history"
        " AND (stream, grp) > (?, ?) AND oldest_position <= ? AND oldest_time < ? ORDER BY stream, grp LIMIT ?",
        (*after, newest - TAIL_KEEP, tx.now - TAIL_AGE, TRIM_GROUPS),
    ).fetchall()
    budget = TRIM_BUDGET
    for index, (stream, group, seq, history) in enumerate(groups):
        cursor = connection.execute(
            _TRIM, (stream, group, seq - history, budget, newest - TAIL_KEEP, tx.now - TAIL_AGE)
        )
        connection.execute(
            "UPDATE motia_stream_groups SET (oldest, oldest_position, oldest_time) = (" + _OLDEST + ")"
            " WHERE stream = ? AND grp = ?",
            (stream, group, stream, group),
        )
        budget -= cursor.rowcount
        if budget <= 0:  # this group may have more: the next pass starts with it
            return _before(groups, index, after)
    if len(groups) < TRIM_GROUPS:
        return ("", "")  # the end: start again from the first
    return groups[-1][0], groups[-1][1]


def _write_prune_streams(tx: _Transaction, cut: float) -> tuple[int, int, bool]:
    """Remove up to :data:`PRUNE_BATCH` of the oldest changes recorded before ``cut`` (never the store's
    newest, which numbers the next position, nor one the tail may still need), keep each touched group's
    oldest-change fields true, and forget the groups left with neither items nor changes (raising the
    seq floor to theirs). Returns (changes removed, groups forgotten, whether more may be due)."""
    connection = tx.connection
    newest = connection.execute("SELECT max(position) FROM motia_stream_changes").fetchone()[0]
    if newest is None:
        return 0, 0, False
    cut = min(cut, tx.now - TAIL_AGE)
    rows = connection.execute(
        "SELECT position, stream, grp, timestamp FROM motia_stream_changes WHERE position < ? ORDER BY position"
        " LIMIT ?",
        (newest, PRUNE_BATCH),
    ).fetchall()
    old = list(itertools.takewhile(lambda row: row[3] < cut, rows))  # a young one waits for the older
    if not old:
        return 0, 0, False
    connection.execute("DELETE FROM motia_stream_changes WHERE position <= ?", (old[-1][0],))
    forgotten = 0
    for stream, group in dict.fromkeys((row[1], row[2]) for row in old):
        oldest = connection.execute(_OLDEST, (stream, group)).fetchone()
        where = (stream, group)
        if oldest is not None:
            connection.execute(
                "UPDATE motia_stream_groups SET oldest = ?, oldest_position = ?, oldest_time = ?"
                " WHERE stream = ? AND grp = ?",
                (*oldest, *where),
            )
            continue
        seq, items = connection.execute(
            "SELECT seq, items FROM motia_stream_groups WHERE stream = ? AND grp = ?", where
        ).fetchone()
        if items == 0:
            connection.execute("DELETE FROM motia_stream_groups WHERE stream = ? AND grp = ?", where)
            connection.execute(_RAISE_FLOOR, (str(seq),))
            forgotten += 1
        else:  # no change left: the next one will be the oldest (bounds that only ever let a trim run)
            connection.execute(
                "UPDATE motia_stream_groups SET oldest = seq + 1, oldest_position = ?, oldest_time = ?"
                " WHERE stream = ? AND grp = ?",
                (newest, tx.now, *where),
            )
    return len(old), forgotten, len(old) == PRUNE_BATCH


def _before(groups: list[Any], index: int, after: tuple[str, str]) -> tuple[str, str]:
    """The cursor just before ``groups[index]``: the group before it, or where this pass started."""
    return after if index == 0 else (groups[index - 1][0], groups[index - 1][1])


def _change(row: Sequence[Any]) -> StreamChange:
    return StreamChange(*row)


class SQLiteStreams:
    """The stream methods of :class:`~motia.state.backends.sqlite.SQLiteBackend` (a mixin; the host
    supplies ``_write``, ``_read`` and ``_stream_waiters``)."""

    _stream_waiters: CommitWaiters

    if TYPE_CHECKING:  # provided by the host class

        def _write(self, function: Callable[..., Any], *args: Any, heavy: bool = False) -> Awaitable[Any]: ...
        async def _read(self, sql: str, parameters: tuple[Any, ...], *, inline: bool) -> list[Any]: ...

    async def stream_get(self, stream: str, group: str, item: str) -> Record | None:
        rows = await self._read(
            "SELECT value, version FROM motia_stream_items WHERE stream = ? AND grp = ? AND item = ?",
            (stream, group, item),
            inline=True,
        )
        return Record(item, rows[0][0], rows[0][1], None) if rows else None

    async def stream_snapshot(self, stream: str, group: str, item: str | None) -> tuple[int, list[Record]]:
        # The seq is read by the statement that reads the items, so they agree. A group found empty has
        # no row to carry it: its seq is read with the proof that it is still empty (else look again).
        only = "" if item is None else " AND item = ?3"
        parameters = (stream, group) if item is None else (stream, group, item)
        while True:
            rows = await self._read(_SNAPSHOT.format(item=only), parameters, inline=item is not None)
            if rows:
                return int(rows[0][0]), [Record(key, data, version, None) for _, key, data, version in rows]
            seq, found = (await self._read(_EMPTY_SNAPSHOT.format(item=only), parameters, inline=True))[0]
            if not found:
                return int(seq), []

    async def stream_groups(self, stream: str) -> list[str]:
        rows = await self._read(
            "SELECT grp FROM motia_stream_groups WHERE stream = ? AND items > 0 ORDER BY grp", (stream,), inline=False
        )
        return [row[0] for row in rows]

    async def stream_names(self) -> list[str]:
        rows = await self._read(
            "SELECT DISTINCT stream FROM motia_stream_groups WHERE items > 0 ORDER BY stream", (), inline=False
        )
        return [row[0] for row in rows]

    async def stream_write(
        self, stream: str, group: str, item: str, data: bytes | None, *, if_version: int | None, history: int
    ) -> StreamChange | None:
        change: StreamChange | None = await self._write(_write_stream, stream, group, item, data, if_version, history)
        return change

    async def stream_send(
        self, stream: str, group: str, item: str | None, event: bytes, *, history: int
    ) -> StreamChange:
        change: StreamChange = await self._write(_write_stream_send, stream, group, item, event, history)
        return change

    async def stream_history(self, stream: str, group: str, *, after: int, limit: int) -> list[StreamChange] | None:
        parameters = (stream, group, after, max(limit, 1))
        seen = None
        while True:
            rows = await self._read(_HISTORY, parameters, inline=limit <= 1000)
            if rows:
                changes = [_change(row[1:]) for row in rows]
                if changes[0].seq != after + 1:
                    return None  # trimmed (oldest first, so never a gap after the first kept)
                return changes[:limit] if limit > 0 else []
            # None after ``after``: then it is the current seq, or beyond it, or the changes after it were
            # removed by age (retention may take a group's newest). A seq above ``after`` may also be a
            # change committed since the look: look again, and call it removed if the seq has not moved.
            seq = int((await self._read(f"SELECT {_GROUP_SEQ}", (stream, group), inline=True))[0][0])
            if after > seq or seq == seen:
                return None
            if after == seq:
                return []
            seen = seq

    async def stream_position(self) -> int:
        rows = await self._read("SELECT coalesce(max(position), 0) FROM motia_stream_changes", (), inline=True)
        return int(rows[0][0])

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[StreamChange]:
        # A commit here wakes the waiter at once; other processes' commits are found by the next look
        # (a rowid range seek, cheap), every TAIL_POLL seconds.
        deadline = time.monotonic() + wait
        sql = f"SELECT {_CHANGE_COLUMNS} FROM motia_stream_changes WHERE position > ? ORDER BY position LIMIT ?"
        while True:
            waiter = self._stream_waiters.register()
            try:
                rows = await self._read(sql, (after, limit), inline=limit <= 1000)
                if rows:
                    return [_change(row) for row in rows]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                await self._stream_waiters.wait(waiter, min(remaining, TAIL_POLL))
            finally:
                self._stream_waiters.discard(waiter)

    async def add_stream_subscriptions(self, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
        await self._write(_write_stream_subscriptions, tuple(subscriptions))
