"""What operators do to the SQLite backend's deliveries: dead letters and pending deliveries listed by page
(a keyset cursor, filters in the ``WHERE``), a dead letter read by id, redriven or purged. A mixin of
:class:`~motia.state.backends.sqlite.backend.SQLiteBackend`; the writes run in a batch's transaction like
every other (``function(transaction, *args)``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from motia.state.backends._operate import check_ids, check_page, parse_dead_cursor, parse_seq_cursor
from motia.state.backends.sqlite.transaction import _Transaction
from motia.state.backends.types import DeadLetter, PendingDelivery

__all__ = ["DEAD_LETTER_COLUMNS", "SQLiteOperations", "dead_letter_of"]

#: The columns of a :class:`DeadLetter`, in its order.
DEAD_LETTER_COLUMNS = "id, step, kind, payload, attempts, error, created_at, failed_at, first_error"


def dead_letter_of(row: Sequence[Any]) -> DeadLetter:
    delivery_id, step, kind, payload, attempts, error, created_at, failed_at, first_error = row
    return DeadLetter(delivery_id, step, kind, bytes(payload), attempts, error, created_at, failed_at, first_error)


def _pending_of(row: Sequence[Any]) -> PendingDelivery:
    delivery_id, step, kind, payload, attempts, created_at, available_at, leased, last, first, seq = row
    return PendingDelivery(
        delivery_id, step, kind, bytes(payload), attempts, created_at, available_at, leased, last, first, str(seq)
    )


def _filters(step: str | None, kind: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    parameters: list[Any] = []
    if step is not None:
        where.append("step = ?")
        parameters.append(step)
    if kind is not None:
        where.append("kind = ?")
        parameters.append(kind)
    return where, parameters


def _write_redrive(tx: _Transaction, ids: Sequence[str]) -> list[str]:
    done = []
    for delivery_id in ids:
        row = tx.connection.execute(
            "DELETE FROM motia_dead_letters WHERE id = ? AND NOT EXISTS (SELECT 1 FROM motia_deliveries WHERE id = ?)"
            " RETURNING step, kind, payload",
            (delivery_id, delivery_id),
        ).fetchone()
        if row is not None:
            tx.connection.execute(
                "INSERT INTO motia_deliveries (id, step, kind, payload, available_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (delivery_id, *row, tx.now, tx.now),
            )
            done.append(delivery_id)
    tx.notify = tx.notify or bool(done)
    return done


def _write_purge_dead(tx: _Transaction, ids: Sequence[str]) -> list[str]:
    return [
        delivery_id
        for delivery_id in ids
        if tx.connection.execute("DELETE FROM motia_dead_letters WHERE id = ?", (delivery_id,)).rowcount
    ]


class SQLiteOperations:
    """The operator methods on SQLite; the host supplies ``_read``, ``_write`` and ``_clock``."""

    _clock: Callable[[], float]

    if TYPE_CHECKING:  # provided by the host class

        async def _read(self, sql: str, parameters: tuple[Any, ...], *, inline: bool) -> list[Any]: ...
        def _write(self, function: Callable[..., Any], *args: Any, heavy: bool = False) -> Awaitable[Any]: ...

    async def dead_letter_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        check_page(step, kind, after, limit)
        start = parse_dead_cursor(after)
        where, parameters = _filters(step, kind)
        if start is not None:
            where.append("(failed_at, id) > (?, ?)")
            parameters += start
        sql = f"SELECT {DEAD_LETTER_COLUMNS} FROM motia_dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._read(sql + " ORDER BY failed_at, id LIMIT ?", (*parameters, limit), inline=False)
        return [dead_letter_of(row) for row in rows]

    async def get_dead_letter(self, delivery_id: str) -> DeadLetter | None:
        rows = await self._read(
            f"SELECT {DEAD_LETTER_COLUMNS} FROM motia_dead_letters WHERE id = ?", (delivery_id,), inline=True
        )
        return dead_letter_of(rows[0]) if rows else None

    async def redrive_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        done: list[str] = await self._write(_write_redrive, tuple(ids))
        return done

    async def purge_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        done: list[str] = await self._write(_write_purge_dead, tuple(ids))
        return done

    async def pending_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PendingDelivery]:
        check_page(step, kind, after, limit)
        where, parameters = _filters(step, kind)
        where.append("seq > ?")
        parameters.append(parse_seq_cursor(after))
        now = self._clock()
        rows = await self._read(
            "SELECT id, step, kind, payload, attempts, created_at, available_at,"
            " CASE WHEN owner IS NOT NULL AND lease_until > ? THEN lease_until END, last_error, first_error, seq"
            f" FROM motia_deliveries WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (now, *parameters, limit),
            inline=False,
        )
        return [_pending_of(row) for row in rows]
