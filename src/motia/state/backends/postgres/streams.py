"""Streams on PostgreSQL: items, the change log with its per-group ``seq`` and store-wide ``position``, its
trimming, tails woken across processes, and stream-trigger deliveries. :class:`PostgresStreams` is a mixin
of :class:`~motia.state.backends.postgres.backend.PostgresBackend`.

A change is one transaction with everything it implies: the item row, the group's ``seq``, the change row,
the trim of the group's log, the stream-trigger deliveries and the ``NOTIFY`` that wakes other processes.

**Positions in commit order.** A tail reads ``position > after``; if a change could commit with a
position below one already read, that tail would miss it. An identity or sequence allocates numbers at
insert, not at commit, so positions come from the one row of ``motia_stream_head`` instead: a change takes
the next one by updating that row, which it keeps locked until it commits. Changes therefore commit one
at a time in position order (as every write of one SQLite file does). To keep that window short the row
is taken by the transaction's last statements: the item, the group lock and the trim come first.

**Group commit.** Holding the head row to commit makes every change wait for the commit (the WAL flush) of
the one before. So the changes one event loop makes at the same time are committed together (as SQLite's
writer does): the first queues a task that commits everything queued, up to :data:`MAX_BATCH` per
transaction, and each caller is answered after that commit. A call that raises (a version conflict) does
so before it changes anything and fails alone. A batch locks all its groups first, in sorted order, and only
then takes the head row, so batches of different processes never wait for each other in a cycle.

**Per-group seq.** A change first locks its group's row of ``motia_stream_groups`` (created on the first
change), so the changes of a group are serialised and read the item they replace after the previous one
committed; a group's row keeps its ``seq`` after its last item is deleted, so a seq never repeats.

**Trimming** (the same rules as SQLite, see :mod:`~motia.state.backends.sqlite.streams`): a change is
removed only when its group's history no longer needs it and the tail no longer does (not among the newest
:data:`TAIL_KEEP` positions, older than :data:`TAIL_AGE` seconds). Each change trims its own group, a few
rows; a periodic pass (every :data:`TRIM_INTERVAL` seconds, after a change) visits the groups marked as
having such a backlog, skipping those being written (``SKIP LOCKED``).

Names and ids (stream, group, item) are stored as UTF-8 ``bytea``: they may hold a NUL, which ``text``
cannot, and ``bytea`` sorts by bytes, which for UTF-8 is code point order, as every backend sorts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from motia.exceptions import StateClosedError, StateConflictError, StateError
from motia.state.backends._events import stream_deliveries
from motia.state.backends._waiters import CommitWaiters
from motia.state.backends.base import StreamStore
from motia.state.backends.postgres.delivery import insert_deliveries
from motia.state.backends.types import Record, StreamChange, StreamTriggerSubscription
from motia.state.observe import current_trace

if TYPE_CHECKING:
    from motia.state.backends.postgres.connection import Tx
    from motia.state.backends.postgres.notify import Notifier

T = TypeVar("T")

logger = logging.getLogger("motia.state")

#: Changes of one event loop committed in one transaction at most.
MAX_BATCH = 256
#: The tail keeps every change younger than this (seconds) and at least the newest TAIL_KEEP.
TAIL_AGE = 60.0
TAIL_KEEP = 10_000
#: A change trims at most this many old changes of its group.
TRIM_PER_WRITE = 8
#: The periodic trim runs at most this often (seconds) per backend, visiting at most TRIM_GROUPS groups
#: and removing at most TRIM_BUDGET changes.
TRIM_INTERVAL = 5.0
TRIM_GROUPS = 64
TRIM_BUDGET = 1000
#: A waiting tail looks for changes this often (seconds) while notifications arrive (a safety net: a
#: notification is what wakes it, and a lost listening connection too, so that it polls), and every
#: TAIL_POLL seconds while the listener is reconnecting.
TAIL_SAFETY_POLL = 10.0
TAIL_POLL = 0.05

_CHANGE_COLUMNS = "position, stream, grp, item, seq, kind, old_value, new_value, timestamp"
_LOCK_GROUP = (
    "SELECT seq, items, oldest, oldest_position, oldest_time, (SELECT position FROM motia_stream_head)"
    " FROM motia_stream_groups WHERE stream = $1 AND grp = $2 FOR UPDATE"
)
#: A group's first change creates its row: seq 0, nothing logged (``oldest`` past ``seq``).
_NEW_GROUP = (
    "INSERT INTO motia_stream_groups (stream, grp, seq, items, history, oldest, oldest_position, oldest_time)"
    " VALUES ($1, $2, 0, 0, 1, 1, 0, 0) ON CONFLICT (stream, grp) DO NOTHING"
)
_TRIM = (
    "DELETE FROM motia_stream_changes WHERE position IN ("
    " SELECT position FROM motia_stream_changes WHERE stream = $1 AND grp = $2 AND seq <= $3 ORDER BY seq LIMIT $4"
    ") AND position <= $5 AND timestamp < $6"
)
_OLDEST = (
    "SELECT seq, position, timestamp FROM motia_stream_changes WHERE stream = $1 AND grp = $2 ORDER BY seq LIMIT 1"
)
#: Takes the next position (locking the head row to commit), logs the change and saves the group.
_RECORD = """
    WITH head AS (UPDATE motia_stream_head SET position = position + 1 RETURNING position),
    change AS (
        INSERT INTO motia_stream_changes (position, stream, grp, item, seq, kind, old_value, new_value, timestamp)
        SELECT position, $1, $2, $3, $4, $5, $6, $7, $8 FROM head
    ),
    saved AS (
        UPDATE motia_stream_groups SET seq = $4, items = $9, history = $10, oldest = coalesce($11, $4),
            oldest_position = coalesce($12, head.position), oldest_time = coalesce($13, $8)
        FROM head WHERE stream = $1 AND grp = $2
    )
    SELECT position FROM head"""
_SNAPSHOT = """
    SELECT coalesce((SELECT seq FROM motia_stream_groups WHERE stream = $1 AND grp = $2), 0), i.item, i.value, i.version
    FROM (SELECT 1) AS one LEFT JOIN motia_stream_items i ON i.stream = $1 AND i.grp = $2{item}
    ORDER BY i.item"""
_HISTORY = """
    SELECT coalesce((SELECT seq FROM motia_stream_groups WHERE stream = $1 AND grp = $2), 0),
        c.position, c.item, c.seq, c.kind, c.old_value, c.new_value, c.timestamp
    FROM (SELECT 1) AS one LEFT JOIN LATERAL (
        SELECT * FROM motia_stream_changes WHERE stream = $1 AND grp = $2 AND seq > $3 ORDER BY seq LIMIT $4
    ) AS c ON true
    ORDER BY c.seq"""
_TAIL = f"SELECT {_CHANGE_COLUMNS} FROM motia_stream_changes WHERE position > $1 ORDER BY position LIMIT $2"


class _Call:
    """One change waiting for its batch: ``await function(tx, *args)``, answered through ``future``."""

    __slots__ = ("function", "args", "future", "trace")

    def __init__(
        self, function: Callable[..., Awaitable[StreamChange | None]], args: tuple[Any, ...], future: Any
    ) -> None:
        self.function = function
        self.args = args
        self.trace = current_trace.get()  # the caller's: the batch commits in a task of its own
        self.future: asyncio.Future[StreamChange | None | BaseException] = future


class _Batch:
    """One event loop's queued changes and the task committing them."""

    __slots__ = ("calls", "flusher")

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.flusher: asyncio.Task[None] | None = None


def _name(value: Any) -> str:
    return bytes(value).decode()


def _blob(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _change(row: Sequence[Any]) -> StreamChange:
    position, stream, group, item, seq, kind, old, new, timestamp = row
    return StreamChange(
        position, _name(stream), _name(group), None if item is None else _name(item), seq, kind, _blob(old),
        _blob(new), timestamp,
    )  # fmt: skip


async def _lock_group(tx: Tx, stream: bytes, group: bytes) -> Any:
    """Lock the group's row to commit (creating it on the group's first change); return it."""
    row = await tx.conn.fetchrow(_LOCK_GROUP, stream, group)
    if row is None:
        await tx.conn.execute(_NEW_GROUP, stream, group)
        row = await tx.conn.fetchrow(_LOCK_GROUP, stream, group)
    return row


async def _write(
    tx: Tx,
    stream: str,
    group: str,
    item: str,
    data: bytes | None,
    if_version: int | None,
    history: int,
) -> StreamChange | None:
    conn = tx.conn
    names = (stream.encode(), group.encode(), item.encode())
    locked = await _lock_group(tx, *names[:2])
    row = await conn.fetchrow(
        "SELECT value, version FROM motia_stream_items WHERE stream = $1 AND grp = $2 AND item = $3", *names
    )
    old, version = (None, 0) if row is None else (bytes(row[0]), row[1])
    if if_version is not None and if_version != version:
        raise StateConflictError(
            f"stream {stream!r} item {group!r}/{item!r} is at version {version}, not {if_version}",
            expected=if_version,
            actual=version,
        )
    if data is None:
        if row is None:
            return None
        await conn.execute("DELETE FROM motia_stream_items WHERE stream = $1 AND grp = $2 AND item = $3", *names)
        return await _record(tx, locked, stream, group, item, "delete", old, None, history, -1)
    await conn.execute(
        "INSERT INTO motia_stream_items (stream, grp, item, value, version) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (stream, grp, item) DO UPDATE SET value = excluded.value, version = excluded.version",
        *names,
        data,
        version + 1,
    )
    kind, delta = ("create", 1) if row is None else ("update", 0)
    return await _record(tx, locked, stream, group, item, kind, old, data, history, delta)


async def _send(tx: Tx, stream: str, group: str, item: str | None, event: bytes, history: int) -> StreamChange:
    locked = await _lock_group(tx, stream.encode(), group.encode())
    return await _record(tx, locked, stream, group, item, "event", None, event, history, 0)


async def _changes(
    tx: Tx, calls: Sequence[_Call], notify: tuple[str, str]
) -> list[StreamChange | None | BaseException]:
    """The changes of one batch, in one transaction: the answer of each call (its error, if it raised one of
    ours; a call raises only before it changes anything, so the others still commit)."""
    await tx.start()  # its commit token first: the locks below are then held for as short a time as can be
    # Every group's lock first, in sorted order, and only then the head row (by each change): two batches
    # of any processes never wait for each other in a cycle.
    for stream, group in sorted({(call.args[0].encode(), call.args[1].encode()) for call in calls}):
        await _lock_group(tx, stream, group)
    answers: list[StreamChange | None | BaseException] = []
    for call in calls:
        tx.trace = call.trace
        try:
            answers.append(await call.function(tx, *call.args))
        except StateError as exc:
            answers.append(exc)
    await tx.conn.execute("SELECT pg_notify($1, $2)", *notify)
    return answers


async def _record(
    tx: Tx,
    locked: Any,
    stream: str,
    group: str,
    item: str | None,
    kind: str,
    old: bytes | None,
    new: bytes | None,
    history: int,
    items_delta: int,
) -> StreamChange:
    """In the transaction that holds the group's lock: trim the group's log, take the next position, log
    the change, save the group and make the deliveries."""
    conn, now = tx.conn, tx.now
    names = (stream.encode(), group.encode())
    previous, items, oldest_seq, oldest_position, oldest_time, head = locked
    seq = previous + 1
    # The head was read with the group lock and may be behind (others committed since): trimming against
    # it keeps more, never less, than the rule allows.
    newest = head + 1
    oldest: tuple[Any, ...] | None = (oldest_seq, oldest_position, oldest_time) if oldest_seq <= previous else None
    if (
        oldest is not None
        and oldest_seq <= seq - history
        and oldest_position <= newest - TAIL_KEEP
        and oldest_time < now - TAIL_AGE
    ):
        await conn.execute(_TRIM, *names, seq - history, TRIM_PER_WRITE, newest - TAIL_KEEP, now - TAIL_AGE)
        found = await conn.fetchrow(_OLDEST, *names)
        oldest = None if found is None else tuple(found)
    subscriptions = [
        StreamTriggerSubscription(step, stream, _name(sub_group) or None, _name(sub_item) or None)
        for step, sub_group, sub_item in await conn.fetch(
            "SELECT step, grp, item FROM motia_stream_subscriptions WHERE stream = $1", names[0]
        )
    ]
    position = await conn.fetchval(
        _RECORD,
        *names,
        None if item is None else item.encode(),
        seq,
        kind,
        old,
        new,
        now,
        items + items_delta,
        history,
        *(oldest or (None, None, None)),
    )
    change = StreamChange(position, stream, group, item, seq, kind, old, new, now)
    deliveries = stream_deliveries(subscriptions, change, tx.trace)
    if deliveries:
        await insert_deliveries(tx, deliveries)  # sets tx.notify: workers everywhere are woken
    tx.streamed = True
    return change


async def _trim_backlog(tx: Tx, after: tuple[bytes, bytes]) -> tuple[bytes, bytes]:
    """Trim the groups with a backlog, from the group after ``after`` on; return where the next pass starts
    (so that groups whose backlog the tail still needs cannot starve the others)."""
    conn, now = tx.conn, tx.now
    newest = await conn.fetchval("SELECT position FROM motia_stream_head")
    groups = await conn.fetch(
        "SELECT stream, grp, seq, history FROM motia_stream_groups WHERE oldest <= seq - history"
        " AND (stream, grp) > ($1, $2) AND oldest_position <= $3 AND oldest_time < $4"
        " ORDER BY stream, grp LIMIT $5 FOR UPDATE SKIP LOCKED",
        *after,
        newest - TAIL_KEEP,
        now - TAIL_AGE,
        TRIM_GROUPS,
    )
    budget = TRIM_BUDGET
    for index, (stream, group, seq, history) in enumerate(groups):
        status = await conn.execute(_TRIM, stream, group, seq - history, budget, newest - TAIL_KEEP, now - TAIL_AGE)
        await conn.execute(
            f"UPDATE motia_stream_groups SET (oldest, oldest_position, oldest_time) = ({_OLDEST})"
            " WHERE stream = $1 AND grp = $2",
            stream,
            group,
        )
        budget -= int(status.rsplit(" ", 1)[1])
        if budget <= 0:  # this group may have more: the next pass starts with it
            return after if index == 0 else (bytes(groups[index - 1][0]), bytes(groups[index - 1][1]))
    if len(groups) < TRIM_GROUPS:
        return (b"", b"")  # the end: start again from the first
    return bytes(groups[-1][0]), bytes(groups[-1][1])


async def _add_subscriptions(tx: Tx, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
    await tx.conn.execute(
        "INSERT INTO motia_stream_subscriptions (stream, step, grp, item)"
        " SELECT * FROM unnest($1::bytea[], $2::text[], $3::bytea[], $4::bytea[]) ON CONFLICT DO NOTHING",
        [s.stream.encode() for s in subscriptions],
        [s.step for s in subscriptions],
        [(s.group or "").encode() for s in subscriptions],
        [(s.item or "").encode() for s in subscriptions],
    )


class PostgresStreams(StreamStore):
    """The :class:`~motia.state.backends.base.StreamStore` methods of the PostgreSQL backend (a mixin: the
    host supplies ``_transact``, ``_fetch`` and ``url``, and the ``_notifier`` of the delivery mixin)."""

    url: str
    _clock: Callable[[], float]
    _closed: bool
    _notifier: Notifier

    if TYPE_CHECKING:  # provided by the host class

        async def _transact(
            self, body: Callable[..., Awaitable[T]], *args: Any, what: str = "write", events: bool = True
        ) -> T: ...
        async def _fetch(self, sql: str, *args: Any, what: str = "read") -> list[Any]: ...

    def _init_streams(self) -> None:
        self._stream_waiters = CommitWaiters()
        self._stream_batches: dict[asyncio.AbstractEventLoop, _Batch] = {}
        self._last_stream_trim = 0.0
        self._stream_trim_from = (b"", b"")

    def _close_streams(self) -> None:
        self._stream_waiters.wake()  # a waiting tail looks again, and finds the store closed

    def add_stream_listener(self, callback: Callable[[], None]) -> None:
        super().add_stream_listener(callback)
        self._notifier.start()  # other processes' changes reach this process's listeners too

    def _stream_committed_elsewhere(self) -> None:
        """Another process committed a change (its notification arrived, on the listener's thread)."""
        self._stream_waiters.wake()
        self._notify_stream_listeners()

    def _after_stream_commit(self) -> None:
        """After the commit of a change here: wake this process's tails and stream listeners."""
        try:
            self._stream_waiters.wake()
            self._notify_stream_listeners()
        except Exception:  # the change is committed: its writer must hear so, whatever a listener does
            logger.exception("a stream listener of the state store %s failed", self.url)

    # -- writes ---------------------------------------------------------------------------------------

    async def stream_write(
        self, stream: str, group: str, item: str, data: bytes | None, *, if_version: int | None, history: int
    ) -> StreamChange | None:
        return await self._change(_write, (stream, group, item, data, if_version, history))

    async def stream_send(
        self, stream: str, group: str, item: str | None, event: bytes, *, history: int
    ) -> StreamChange:
        change = await self._change(_send, (stream, group, item, event, history))
        assert change is not None
        return change

    async def _change(
        self, function: Callable[..., Awaitable[StreamChange | None]], args: tuple[Any, ...]
    ) -> StreamChange | None:
        """Queue one change for this loop's next batch and wait for its answer (see :class:`_Batches`)."""
        loop = asyncio.get_running_loop()
        batch = self._stream_batches.get(loop)
        if batch is None:
            batch = self._stream_batches.setdefault(loop, _Batch())
            for closed in [other for other in self._stream_batches if other.is_closed()]:
                del self._stream_batches[closed]
        call = _Call(function, args, loop.create_future())
        batch.calls.append(call)
        if batch.flusher is None:
            batch.flusher = loop.create_task(self._flush(batch))
        answer = await asyncio.shield(call.future)
        await self._trim_now_and_then()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def _flush(self, batch: _Batch) -> None:
        """Commit the queued changes, up to MAX_BATCH per transaction, until none is left. A task of its own:
        a caller cancelled while waiting does not cancel the commit of the others' changes."""
        notify = (self._notifier.channel, self._notifier.payload("s"))
        calls: list[_Call] = []
        try:
            while batch.calls:
                calls, batch.calls = batch.calls[:MAX_BATCH], batch.calls[MAX_BATCH:]
                answers: list[StreamChange | None | BaseException]
                try:
                    answers = await self._transact(_changes, calls, notify, what="write stream changes", events=False)
                except Exception as exc:  # the whole batch failed (the store is away, or closed): each caller hears
                    answers = [exc] * len(calls)
                for call, answer in zip(calls, answers, strict=True):
                    if not call.future.done():
                        call.future.set_result(answer)
        except BaseException as exc:  # cancelled (the loop is shutting down): nobody may wait forever
            for call in [*calls, *batch.calls]:
                if not call.future.done():
                    call.future.set_result(StateClosedError(f"the state store {self.url} stopped writing: {exc!r}"))
            batch.calls.clear()
            raise
        finally:
            batch.flusher = None

    async def _trim_now_and_then(self) -> None:
        """The periodic trim of groups with a backlog, at most every TRIM_INTERVAL seconds, after a change."""
        now = self._clock()
        if now - self._last_stream_trim < TRIM_INTERVAL:
            return
        self._last_stream_trim = now
        try:
            self._stream_trim_from = await self._transact(
                _trim_backlog, self._stream_trim_from, what="trim the stream log", events=False
            )
        except Exception:  # the change is committed; the next pass trims what this one could not
            logger.warning("trimming the stream log of the state store %s failed", self.url, exc_info=True)

    async def add_stream_subscriptions(self, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
        unique = list(dict.fromkeys(subscriptions))
        if unique:
            await self._transact(_add_subscriptions, unique, what="add stream subscriptions", events=False)

    # -- reads ----------------------------------------------------------------------------------------

    async def stream_get(self, stream: str, group: str, item: str) -> Record | None:
        rows = await self._fetch(
            "SELECT value, version FROM motia_stream_items WHERE stream = $1 AND grp = $2 AND item = $3",
            stream.encode(),
            group.encode(),
            item.encode(),
            what="read a stream item",
        )
        return Record(item, bytes(rows[0][0]), rows[0][1], None) if rows else None

    async def stream_snapshot(self, stream: str, group: str, item: str | None) -> tuple[int, list[Record]]:
        # One statement, so one snapshot: the seq and the items agree.
        if item is None:
            rows = await self._fetch(
                _SNAPSHOT.format(item=""), stream.encode(), group.encode(), what="read a stream group"
            )
        else:
            rows = await self._fetch(
                _SNAPSHOT.format(item=" AND i.item = $3"),
                stream.encode(),
                group.encode(),
                item.encode(),
                what="read a stream item",
            )
        records = [Record(_name(key), bytes(data), version, None) for _, key, data, version in rows if key is not None]
        return int(rows[0][0]), records

    async def stream_groups(self, stream: str) -> list[str]:
        rows = await self._fetch(
            "SELECT grp FROM motia_stream_groups WHERE stream = $1 AND items > 0 ORDER BY grp",
            stream.encode(),
            what="list stream groups",
        )
        return [_name(row[0]) for row in rows]

    async def stream_names(self) -> list[str]:
        rows = await self._fetch(
            "SELECT DISTINCT stream FROM motia_stream_groups WHERE items > 0 ORDER BY stream", what="list streams"
        )
        return [_name(row[0]) for row in rows]

    async def stream_history(self, stream: str, group: str, *, after: int, limit: int) -> list[StreamChange] | None:
        names = (stream.encode(), group.encode())
        rows = await self._fetch(_HISTORY, *names, after, max(limit, 1), what="read a stream's history")
        seq = int(rows[0][0])
        if after > seq:
            return None  # a cursor from another store
        if after == seq:
            return []
        changes = [_change((row[1], *names, *row[2:])) for row in rows if row[1] is not None]
        if not changes or changes[0].seq != after + 1:
            return None  # trimmed (oldest first, so never a gap after the first kept)
        return changes[:limit] if limit > 0 else []

    async def stream_position(self) -> int:
        rows = await self._fetch("SELECT position FROM motia_stream_head", what="read the stream log")
        return int(rows[0][0]) if rows else 0

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[StreamChange]:
        # A commit in this process wakes the waiter at once, another process's by its NOTIFY; the look is
        # repeated every TAIL_SAFETY_POLL seconds anyway (every TAIL_POLL while not listening).
        if wait > 0:
            self._notifier.start()
        deadline = time.monotonic() + wait
        while True:
            waiter = self._stream_waiters.register()
            try:
                # A close racing this look raises StateClosedError (connection.py's _translate).
                rows = await self._fetch(_TAIL, after, limit, what="tail the stream log")
                if rows:
                    return [_change(row) for row in rows]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                poll = TAIL_SAFETY_POLL if self._notifier.listening else TAIL_POLL
                await self._stream_waiters.wait(waiter, min(remaining, poll))
            finally:
                self._stream_waiters.discard(waiter)
