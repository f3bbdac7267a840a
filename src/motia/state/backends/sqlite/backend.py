"""``SQLiteBackend``: the store's methods, composed from the connections, the group-commit writer, and the
key-value and delivery writes. Its reads go through :meth:`SQLiteConnections._read
<motia.state.backends.sqlite.connection.SQLiteConnections._read>`: point reads and small pages on the loop thread,
whole-scope reads on a worker thread.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from motia.exceptions import ConfigError, StateBackendError
from motia.state.backends._events import error_text
from motia.state.backends._waiters import CommitWaiters
from motia.state.backends._writes import check_age, check_lease, check_lease_ttl, check_limit, check_steps
from motia.state.backends.sqlite.connection import _Busy, _forks
from motia.state.backends.sqlite.delivery import (
    TICK_PRUNE_INTERVAL,
    _write_acquire_lease,
    _write_add_dead_letters,
    _write_cap_dead_letters,
    _write_claim,
    _write_claim_tick,
    _write_complete_and_claim,
    _write_complete_many,
    _write_dispatch,
    _write_enable_events,
    _write_enqueue,
    _write_extend,
    _write_prune,
    _write_release_lease,
    _write_settle,
    _write_touch_steps,
)
from motia.state.backends.sqlite.keyvalue import (
    _LIVE,
    _SCOPES,
    _write_clear,
    _write_commit,
    _write_delete,
    _write_purge,
    _write_restore,
    _write_set,
    _write_update,
)
from motia.state.backends.sqlite.operate import DEAD_LETTER_COLUMNS, SQLiteOperations, dead_letter_of
from motia.state.backends.sqlite.outbox import MODE, Subscribers
from motia.state.backends.sqlite.streams import SQLiteStreams, _write_prune_streams
from motia.state.backends.sqlite.writer import SQLiteWriter, _LoopWriter
from motia.state.backends.types import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Record,
    ScopeStats,
    StoreStats,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.ops import Operation
from motia.state.values import prefix_upper_bound

#: Per scope: stored keys, their bytes (key and value as stored) and how many have expired.
_SCOPE_STATS = (
    "SELECT scope, count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0),"
    " coalesce(sum(expires_at IS NOT NULL AND expires_at <= ?), 0) FROM motia_state GROUP BY scope"
)
#: The outbox, deliveries, dead letters, subscriptions, steps, stream groups, items and changes.
_COUNTS = (
    "SELECT (SELECT count(*) FROM motia_state_events WHERE seq >"
    " coalesce((SELECT CAST(value AS INTEGER) FROM motia_meta WHERE name = 'outbox_cursor'), 0)),"
    " (SELECT count(*) FROM motia_deliveries), (SELECT count(*) FROM motia_dead_letters),"
    " (SELECT count(*) FROM motia_subscriptions) + (SELECT count(*) FROM motia_stream_subscriptions),"
    " (SELECT count(*) FROM motia_steps), (SELECT count(*) FROM motia_stream_groups),"
    " (SELECT count(*) FROM motia_stream_items), (SELECT count(*) FROM motia_stream_changes)"
)
#: How long a dispatch trusts that the store is still in direct mode with nothing in the outbox (seconds):
#: what another process changes (a prune, an outbox write) is seen after this at most, as polling would.
DIRECT_RECHECK = 0.05
_PAGES = "SELECT * FROM pragma_page_count(), pragma_page_size(), pragma_freelist_count()"
#: Bytes of pages per table and index (the dbstat virtual table, when SQLite was built with it).
_TABLE_SIZES = "SELECT name, sum(pgsize) FROM dbstat WHERE name NOT LIKE 'sqlite_%' GROUP BY name ORDER BY name"

#: When a delivery becomes claimable with no commit: its availability, or its lease's end while it is leased
#: (the ``?`` is now).
_DUE = "max(available_at, CASE WHEN owner IS NOT NULL AND lease_until > ? THEN lease_until ELSE 0 END)"
_GET = f"SELECT value, version, expires_at FROM motia_state WHERE scope = ? AND key = ? AND {_LIVE}"
#: Page sizes up to this are read on the loop thread; larger ones on a worker thread.
INLINE_PAGE_LIMIT = 1000


def _is_utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (holds no lone surrogate)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SQLiteBackend(SQLiteStreams, SQLiteOperations, SQLiteWriter):
    """State in one SQLite file, shared safely by every thread and process that opens it."""

    completes_with_claim = True

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
        self._subscribers = Subscribers()
        #: The ``triggers`` number of the last dispatch that found direct mode, and the subscriptions it
        #: registered: while both hold, a dispatch has nothing to do (see :meth:`dispatch_events`).
        self._dispatched: tuple[int, frozenset[Subscription], int, float] | None = None
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._last_sweep = 0.0
        self._ticks_pruned = 0.0
        self._last_stream_trim = 0.0
        self._stream_trim_from = ("", "")
        self._stream_waiters = CommitWaiters()
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
        self._in_flight: list[None] = []
        self._closed = False
        self._writes_since_checkpoint = 0
        self._checkpointing = False
        self._checkpoint_gate = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="motia-sqlite")
        try:
            self._open()
        except BaseException:
            self._close_connections()
            self._executor.shutdown(wait=False)
            raise

    # set and update hand back what the write hands back (see SQLiteWriter._write) instead of awaiting it in a coroutine
    # of their own: no frame of theirs on the hottest path (issue 15). Callers await them at once.

    def set(
        self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None
    ) -> Awaitable[WriteResult]:
        return self._write(_write_set, scope, key, data, ttl, if_version)

    def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> Awaitable[WriteResult]:
        return self._write(_write_update, scope, key, operations, ttl, if_version, max_value_bytes)

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
        # In direct mode groups of writes make their deliveries themselves: while the subscriptions are the
        # ones this backend registered (same number) and the outbox is empty, there is nothing to do. Only
        # another process can change that unseen (this one's outbox writes and prunes are counted), so it is
        # looked at (one read) at most every DIRECT_RECHECK seconds, not once per local commit.
        wanted = frozenset(subscriptions)
        known = self._dispatched
        if known is not None and wanted <= known[1] and self._subscribers.outbox_writes == known[2]:
            number, registered, outbox_writes, checked_at = known
            now = time.monotonic()
            if now - checked_at < DIRECT_RECHECK:
                return 0
            (mode, waiting), *_ = await self._read(MODE, (), inline=True)
            if mode == number and not waiting:
                self._dispatched = (number, registered, outbox_writes, now)
                return 0
        outbox_writes = self._subscribers.outbox_writes
        consumed, mode = await self._write(_write_dispatch, tuple(subscriptions), limit)
        # Only an outbox this round emptied is known empty: a full page (``limit``) may have left events behind,
        # which the caller's next round must move, not skip.
        drained = mode > 0 and consumed < limit
        self._dispatched = (mode, wanted, outbox_writes, time.monotonic()) if drained else None
        return int(consumed)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        if not deliveries:
            return 0
        added: int = await self._write(_write_enqueue, tuple(deliveries))
        return added

    async def add_dead_letters(self, deliveries: Sequence[NewDelivery], *, error: str) -> int:
        if not deliveries:
            return 0
        added: int = await self._write(_write_add_dead_letters, tuple(deliveries), error_text(error))
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

    async def complete_many(self, delivery_ids: Sequence[str], *, owner: str) -> builtins.set[str]:
        if not delivery_ids:
            return set()
        done: builtins.set[str] = await self._write(_write_complete_many, tuple(dict.fromkeys(delivery_ids)), owner)
        return done

    async def complete_and_claim(
        self, delivery_ids: Sequence[str], *, owner: str, steps: Sequence[str], limit: int, lease: float
    ) -> tuple[builtins.set[str], list[Delivery]]:
        outcome: tuple[builtins.set[str], list[Delivery]] = await self._write(
            _write_complete_and_claim, tuple(dict.fromkeys(delivery_ids)), owner, tuple(steps), limit, lease
        )
        return outcome

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        done: bool = await self._write(_write_settle, delivery_id, owner, "retry", delay, error)
        return done

    async def postpone(self, delivery_id: str, *, owner: str, delay: float) -> bool:
        done: bool = await self._write(_write_settle, delivery_id, owner, "postpone", delay, "")
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

    async def prune(
        self,
        *,
        dead_letter_age: float | None,
        step_age: float | None,
        stream_age: float | None = None,
        dead_letter_limit: int | None = None,
    ) -> PruneResult:
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        stream_age = check_age("stream_age", stream_age)
        dead_letter_limit = check_limit("dead_letter_limit", dead_letter_limit)
        result = PruneResult(0, 0, 0)
        if dead_letter_age is not None or step_age is not None:
            result = await self._write(_write_prune, dead_letter_age, step_age, heavy=True)
            self._dispatched = None  # it may have dropped subscriptions: the next dispatch looks
        if dead_letter_limit is not None:
            capped: int = await self._write(_write_cap_dead_letters, dead_letter_limit, heavy=True)
            result = result._replace(dead_letters=result.dead_letters + capped)
        if stream_age is None:
            return result
        changes = groups = 0
        more = True
        while more:  # a batch per transaction: writers wait for one batch at most, never for the whole prune
            removed, forgotten, more = await self._write(_write_prune_streams, self._clock() - stream_age, heavy=True)
            changes += removed
            groups += forgotten
        return result._replace(stream_changes=changes, stream_groups=groups)

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        sql = f"SELECT {DEAD_LETTER_COLUMNS} FROM motia_dead_letters"
        parameters: tuple[Any, ...] = (limit,)
        if step is not None:
            sql += " WHERE step = ?"
            parameters = (step, limit)
        rows = await self._read(sql + " ORDER BY failed_at, id LIMIT ?", parameters, inline=False)
        return [dead_letter_of(row) for row in rows]

    async def pending(self, step: str | None = None) -> int:
        if step is None:
            rows = await self._read("SELECT count(*) FROM motia_deliveries", (), inline=False)
        else:
            rows = await self._read("SELECT count(*) FROM motia_deliveries WHERE step = ?", (step,), inline=False)
        return int(rows[0][0])

    async def next_due(self, steps: Sequence[str]) -> float | None:
        if not steps:
            return None
        now = self._clock()
        rows = await self._read(
            f"SELECT min({_DUE}) FROM motia_deliveries WHERE step IN ({','.join('?' * len(steps))}) AND {_DUE} > ?",
            (now, *steps, now, now),
            inline=False,
        )
        due = rows[0][0]
        return None if due is None else float(due) - now

    async def pending_by_step(self) -> dict[str, int]:
        rows = await self._read("SELECT step, count(*) FROM motia_deliveries GROUP BY step", (), inline=False)
        return {str(step): int(count) for step, count in rows}

    async def get(self, scope: str, key: str) -> Record | None:
        parameters = (scope, key, self._clock())
        try:  # on the loop thread, without the coroutine of _read: this is the hottest read
            rows = self._query(True, _GET, parameters)
        except _Busy:
            rows = await self._read(_GET, parameters, inline=False)
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

    async def stats(self) -> StoreStats:
        now = self._clock()
        rows = await self._read(_SCOPE_STATS, (now,), inline=False)
        scopes = {scope: ScopeStats(int(keys), int(size)) for scope, keys, size, _ in rows}
        (counts,) = await self._read(_COUNTS, (), inline=False)
        (pages,) = await self._read(_PAGES, (), inline=False)
        page_count, page_size, free_pages = (int(n) for n in pages)
        size = {"total": page_count * page_size, "free": free_pages * page_size}
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists():
            size["wal"] = wal.stat().st_size
        size["total"] += size.get("wal", 0)
        try:
            tables = await self._read(_TABLE_SIZES, (), inline=False)
        except StateBackendError:  # an SQLite built without the dbstat table: no per-table figures
            tables = []
        size.update({f"table:{name}": int(bytes_) for name, bytes_ in tables})
        outbox, pending, dead, subscriptions, steps, groups, items, changes = (int(n) for n in counts)
        expired = sum(int(row[3]) for row in rows)
        return StoreStats(scopes, expired, outbox, pending, dead, subscriptions, steps, groups, items, changes, size)

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stream_waiters.wake()  # a waiting tail looks again, and finds the store closed
        await asyncio.get_running_loop().run_in_executor(None, self._drain_and_stop)
        self._close_connections()
