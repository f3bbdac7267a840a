"""The key-value store on PostgreSQL: :class:`PostgresKeyValue`, the ``StateStore`` methods.

Every write is one transaction (:meth:`~motia.state.backends.postgres.connection.PostgresConnections._transact`):
it locks the rows it reads (``SELECT ... FOR UPDATE``: concurrent writers of a key queue on its row, and each
sees the previous one's commit), plans the write in Python with the rules every backend shares
(:mod:`motia.state.backends._writes`: versions, TTLs, conflicts, update operations), and writes the row and,
when events are on, its change event in one statement. A key that is absent cannot be locked: two writers
creating it at once both ``INSERT``, the second fails on the primary key and its transaction runs again, now
finding the first one's row. Multi-key transactions lock their keys in sorted order, so two of them never
deadlock (and if a clear crosses them, PostgreSQL detects it and the loser runs again).

A row found expired by a write is deleted then (with its ``expired`` event) and the write treats the key as
absent; reads filter expired rows out (``expires_at > now``), so an expired key is invisible at once;
:meth:`PostgresKeyValue.purge_expired` sweeps them in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from motia.state.backends._writes import (
    check_version,
    plan_restore,
    plan_set,
    plan_transaction_write,
    plan_update,
)
from motia.state.backends.postgres.connection import COMMIT_MARK, EVENTS_FLAG, Tx
from motia.state.backends.postgres.notify import Notifier
from motia.state.backends.postgres.statement import ONE_STATEMENT_MAX, PostgresStatements, VersionConflict
from motia.state.backends.types import Record, TransactionWrite, WriteResult
from motia.state.observe import current_trace
from motia.state.ops import Operation
from motia.state.values import prefix_upper_bound

#: Expired keys one statement of :meth:`PostgresKeyValue.purge_expired` removes at most.
PURGE_BATCH = 5000

_LIVE = "(expires_at IS NULL OR expires_at > $3)"
_GET = f"SELECT value, version, expires_at FROM motia_state WHERE scope = $1 AND key = $2 AND {_LIVE}"
#: ``set`` in one statement (schema version 4; :mod:`~motia.state.backends.postgres.statement`).
_CALL_SET = "SELECT * FROM motia_set($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
_SELECT_FOR_UPDATE = "SELECT value, version, expires_at FROM motia_state WHERE scope = $1 AND key = $2 FOR UPDATE"
#: The first read of a write also starts its transaction (see :meth:`Tx.start`): one round trip, not two.
_START_AND_SELECT = (
    f"WITH {COMMIT_MARK} SELECT {{flag}}, row.value, row.version, row.expires_at FROM (SELECT 1) AS one"
    " LEFT JOIN LATERAL (SELECT value, version, expires_at FROM motia_state WHERE scope = $3 AND key = $4"
    " FOR UPDATE) AS row ON true"
)
_START_AND_SELECT_FLAG = _START_AND_SELECT.format(flag=EVENTS_FLAG)
_START_AND_SELECT_NO_FLAG = _START_AND_SELECT.format(flag="NULL")
_EVENT = (
    " INSERT INTO motia_state_events (event_type, scope, key, old_value, new_value, version, timestamp, trace)"
    " VALUES ($6, $1, $2, $7, $3, $4, $8, $9)"
)
_INSERT = "INSERT INTO motia_state (scope, key, value, version, expires_at) VALUES ($1, $2, $3, $4, $5)"
_UPDATE = "UPDATE motia_state SET value = $3, version = $4, expires_at = $5 WHERE scope = $1 AND key = $2"
_INSERT_WITH_EVENT = f"WITH written AS ({_INSERT}){_EVENT}"
_UPDATE_WITH_EVENT = f"WITH written AS ({_UPDATE}){_EVENT}"
_DELETE = "DELETE FROM motia_state WHERE scope = $1 AND key = $2"
_DELETE_WITH_EVENT = (
    "WITH removed AS (DELETE FROM motia_state WHERE scope = $1 AND key = $2 RETURNING value, version)"
    " INSERT INTO motia_state_events (event_type, scope, key, old_value, new_value, version, timestamp, trace)"
    " SELECT $3, $1, $2, value, NULL, version, $4, $5 FROM removed"
)
_CLEAR = (
    "WITH removed AS (DELETE FROM motia_state WHERE scope = $1 RETURNING expires_at)"
    " SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > $2) FROM removed"
)
_CLEAR_WITH_EVENTS = (
    "WITH removed AS (DELETE FROM motia_state WHERE scope = $1 RETURNING key, value, version, expires_at),"
    " events AS (INSERT INTO motia_state_events"
    " (event_type, scope, key, old_value, new_value, version, timestamp, trace)"
    " SELECT CASE WHEN expires_at IS NULL OR expires_at > $2 THEN 'deleted' ELSE 'expired' END,"
    " $1, key, value, NULL, version, $2, $3 FROM removed ORDER BY key)"
    " SELECT count(*) FILTER (WHERE expires_at IS NULL OR expires_at > $2) FROM removed"
)
_PURGE = (
    "WITH removed AS (DELETE FROM motia_state WHERE (scope, key) IN ("
    " SELECT scope, key FROM motia_state WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    ") AND expires_at <= $1 RETURNING scope, key, value, version)"
)
_PURGE_QUIET = f"{_PURGE} SELECT count(*) FROM removed"
_PURGE_WITH_EVENTS = (
    f"{_PURGE}, events AS (INSERT INTO motia_state_events"
    " (event_type, scope, key, old_value, new_value, version, timestamp)"
    " SELECT 'expired', scope, key, value, NULL, version, $1 FROM removed ORDER BY scope, key)"
    " SELECT count(*) FROM removed"
)
_SCOPES = """
    WITH RECURSIVE scopes(scope) AS (
        (SELECT scope FROM motia_state ORDER BY scope LIMIT 1)
        UNION ALL
        SELECT (SELECT m.scope FROM motia_state m WHERE m.scope > scopes.scope ORDER BY m.scope LIMIT 1) FROM scopes
        WHERE scopes.scope IS NOT NULL
    )
    SELECT scope FROM scopes WHERE scope IS NOT NULL AND EXISTS (
        SELECT 1 FROM motia_state WHERE motia_state.scope = scopes.scope
        AND (expires_at IS NULL OR expires_at > $1)
    ) ORDER BY scope"""


def _b(text: str) -> bytes:
    """A scope or key as stored: its UTF-8 (the manager let no lone surrogate through)."""
    return text.encode("utf-8")


def _bound(text: str) -> bytes:
    """A page bound as bytes in code point order; a lone surrogate (possible in ``after``) keeps its place
    between its neighbours (``surrogatepass`` encodes it as its code point's three bytes)."""
    return text.encode("utf-8", "surrogatepass")


def _is_utf8(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def _load(tx: Tx, scope: str, key: str) -> tuple[Record | None, bool]:
    """The live record of ``(scope, key)``, locked for this transaction, and whether a row exists for it
    (``False`` also after an expired row was removed here, with its ``expired`` event)."""
    scope_b, key_b = _b(scope), _b(key)
    if not tx.started:
        flag, data, version, expires_at = await tx.conn.fetchrow(
            _START_AND_SELECT_FLAG if tx.read_flag else _START_AND_SELECT_NO_FLAG, tx.second, tx.token, scope_b, key_b
        )
        tx.started = True
        if tx.read_flag:
            tx.record_events = flag == "1"
        if version is None:
            return None, False
    else:
        row = await tx.conn.fetchrow(_SELECT_FOR_UPDATE, scope_b, key_b)
        if row is None:
            return None, False
        data, version, expires_at = row
    if expires_at is not None and expires_at <= tx.now:
        if tx.record_events:
            await tx.conn.execute(_DELETE_WITH_EVENT, scope_b, key_b, "expired", tx.now, tx.trace)
            tx.notify = True
        else:
            await tx.conn.execute(_DELETE, scope_b, key_b)
        return None, False
    return Record(key, data, version, expires_at), True


async def _store(tx: Tx, scope: str, record: Record, old_data: bytes | None, row_exists: bool) -> None:
    """Write ``record`` (inserting or updating its row) and, when events are on, its event, in one statement."""
    args: tuple[Any, ...] = (_b(scope), _b(record.key), record.data, record.version, record.expires_at)
    if tx.record_events:
        event_type = "created" if old_data is None else "updated"
        await tx.conn.execute(
            _UPDATE_WITH_EVENT if row_exists else _INSERT_WITH_EVENT, *args, event_type, old_data, tx.now, tx.trace
        )
        tx.notify = True
    else:
        await tx.conn.execute(_UPDATE if row_exists else _INSERT, *args)


async def _remove(tx: Tx, scope: str, current: Record) -> None:
    if tx.record_events:
        await tx.conn.execute(_DELETE_WITH_EVENT, _b(scope), _b(current.key), "deleted", tx.now, tx.trace)
        tx.notify = True
    else:
        await tx.conn.execute(_DELETE, _b(scope), _b(current.key))


async def _write_set(
    tx: Tx, scope: str, key: str, data: bytes, ttl: float | None, if_version: int | None
) -> WriteResult:
    current, exists = await _load(tx, scope, key)
    record, result = plan_set(scope, key, current, data, ttl, if_version, tx.now)
    await _store(tx, scope, record, result.old_data, exists)
    return result


async def _write_update(
    tx: Tx,
    scope: str,
    key: str,
    operations: Sequence[Operation],
    ttl: float | None,
    if_version: int | None,
    max_value_bytes: int,
) -> WriteResult:
    current, exists = await _load(tx, scope, key)
    record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, tx.now)
    if record is not None:
        await _store(tx, scope, record, result.old_data, exists)
    return result


async def _write_delete(tx: Tx, scope: str, key: str, if_version: int | None) -> bytes | None:
    current, _ = await _load(tx, scope, key)
    check_version(scope, key, current, if_version)
    if current is None:
        return None
    await _remove(tx, scope, current)
    return current.data


async def _write_clear(tx: Tx, scope: str) -> int:
    await tx.start()
    if tx.record_events:
        live: int = await tx.conn.fetchval(_CLEAR_WITH_EVENTS, _b(scope), tx.now, tx.trace)
        tx.notify = True
    else:
        live = await tx.conn.fetchval(_CLEAR, _b(scope), tx.now)
    return live


async def _write_purge(tx: Tx, limit: int) -> int:
    await tx.start()
    if tx.record_events:
        removed: int = await tx.conn.fetchval(_PURGE_WITH_EVENTS, tx.now, limit)
        tx.notify = tx.notify or removed > 0
    else:
        removed = await tx.conn.fetchval(_PURGE_QUIET, tx.now, limit)
    return removed


async def _write_commit(tx: Tx, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
    # Lock every key in one order (sorted), so concurrent transactions on overlapping keys never deadlock.
    loaded: dict[tuple[str, str], tuple[Record | None, bool]] = {}
    pairs = {*expected, *((write.scope, write.key) for write in writes)}
    for pair in sorted(pairs, key=lambda p: (_b(p[0]), _b(p[1]))):
        loaded[pair] = await _load(tx, *pair)
    for (scope, key), version in expected.items():  # every check before any write: all or nothing
        check_version(scope, key, loaded[(scope, key)][0], version)
    for write in writes:
        pair = (write.scope, write.key)
        current, exists = loaded[pair]
        record = plan_transaction_write(current, write, tx.now)
        if record is not None:
            await _store(tx, write.scope, record, None if current is None else current.data, exists)
            loaded[pair] = (record, True)
        elif current is not None:
            await _remove(tx, write.scope, current)
            loaded[pair] = (None, False)


async def _write_restore(
    tx: Tx, scope: str, key: str, data: bytes, version: int | None, expires_at: float | None, replace: bool
) -> bool:
    current, exists = await _load(tx, scope, key)
    if current is not None and not replace:
        return False
    record = plan_restore(current, key, data, version, expires_at)
    await _store(tx, scope, record, None if current is None else current.data, exists)
    return True


class PostgresKeyValue(PostgresStatements):
    """The ``StateStore`` methods of :class:`~motia.state.backends.postgres.PostgresBackend`."""

    _clock: Callable[[], float]
    _notifier: Notifier

    async def get(self, scope: str, key: str) -> Record | None:
        rows = await self._fetch(_GET, _b(scope), _b(key), self._clock(), what="get")
        if not rows:
            return None
        data, version, expires_at = rows[0]
        return Record(key, data, version, expires_at)

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        if len(data) > ONE_STATEMENT_MAX:
            return await self._transact(_write_set, scope, key, data, ttl, if_version, what="set")
        now = self._clock()
        try:
            events, old, version = await self._write_statement(
                _CALL_SET,
                not self._events_enabled,
                _b(scope),
                _b(key),
                data,
                None if ttl is None else now + ttl,
                if_version,
                now,
                self._notifier.channel,
                self._notifier.payload("d"),
                current_trace.get(),  # the writer's traceparent, kept with the event
                what="set",
            )
        except VersionConflict as conflict:
            actual = conflict.actual
            check_version(scope, key, Record(key, b"", actual, None) if actual else None, if_version)
            raise  # (check_version raised: the versions differ)
        if events:
            self._events_enabled = True  # it never goes off again
        if events is not False:  # recorded an event (or not known: a call recovered after a lost reply)
            self._notify_listeners()  # type: ignore[attr-defined]
        return WriteResult(None if old is None else bytes(old), data, version)

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
        return await self._transact(
            _write_update, scope, key, operations, ttl, if_version, max_value_bytes, what="update"
        )

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        return await self._transact(_write_delete, scope, key, if_version, what="delete")

    async def clear(self, scope: str) -> int:
        return await self._transact(_write_clear, scope, what="clear")

    async def purge_expired(self) -> int:
        removed = 0
        while True:
            count = await self._transact(_write_purge, PURGE_BATCH, what="purge expired keys")
            removed += count
            if count < PURGE_BATCH:
                return removed

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        await self._transact(_write_commit, dict(expected), tuple(writes), what="commit a transaction")

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        return await self._transact(_write_restore, scope, key, data, version, expires_at, replace, what="restore")

    async def values(self, scope: str) -> list[bytes]:
        rows = await self._fetch(
            "SELECT value FROM motia_state WHERE scope = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY key",
            _b(scope),
            self._clock(),
            what="values",
        )
        return [row[0] for row in rows]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        if limit == 0:
            return []
        if prefix and not _is_utf8(prefix):
            return []  # no key holds a lone surrogate, so none starts with this prefix
        sql = "SELECT key, value, version, expires_at FROM motia_state WHERE scope = $1"
        sql += " AND (expires_at IS NULL OR expires_at > $2)"
        parameters: list[Any] = [_b(scope), self._clock()]
        if after is not None:
            parameters.append(_bound(after))
            sql += f" AND key > ${len(parameters)}"
        if prefix:
            parameters.append(_b(prefix))
            sql += f" AND key >= ${len(parameters)}"
            upper = prefix_upper_bound(prefix)
            if upper is not None:
                parameters.append(_bound(upper))
                sql += f" AND key < ${len(parameters)}"
        sql += " ORDER BY key"
        if limit is not None:
            parameters.append(limit)
            sql += f" LIMIT ${len(parameters)}"
        rows = await self._fetch(sql, *parameters, what="items")
        return [Record(key.decode("utf-8"), data, version, expires_at) for key, data, version, expires_at in rows]

    async def count(self, scope: str) -> int:
        rows = await self._fetch(
            "SELECT count(*) FROM motia_state WHERE scope = $1 AND (expires_at IS NULL OR expires_at > $2)",
            _b(scope),
            self._clock(),
            what="count",
        )
        return int(rows[0][0])

    async def scopes(self) -> list[str]:
        rows = await self._fetch(_SCOPES, self._clock(), what="scopes")
        return [row[0].decode("utf-8") for row in rows]
