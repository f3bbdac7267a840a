"""What operators do to the PostgreSQL backend's deliveries: dead letters and pending deliveries listed by
page (a keyset cursor, filters in the ``WHERE``), a dead letter read by id, redriven or purged. A mixin of
:class:`~motia.state.backends.postgres.backend.PostgresBackend`, beside
:class:`~motia.state.backends.postgres.delivery.PostgresDelivery`, whose writes it shares the shape of.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from motia.state.backends._operate import check_ids, check_page, parse_dead_cursor, parse_seq_cursor
from motia.state.backends.postgres.delivery import _DEAD_LETTER_COLUMNS, _dead_letter_of
from motia.state.backends.types import DeadLetter, PendingDelivery

if TYPE_CHECKING:
    from motia.state.backends.postgres.connection import Tx

__all__ = ["PostgresOperations"]

T = TypeVar("T")


def _filters(step: str | None, kind: str | None, parameters: list[Any]) -> list[str]:
    where = []
    if step is not None:
        parameters.append(step)
        where.append(f"step = ${len(parameters)}")
    if kind is not None:
        parameters.append(kind)
        where.append(f"kind = ${len(parameters)}")
    return where


def _pending_of(row: Sequence[Any]) -> PendingDelivery:
    delivery_id, step, kind, payload, attempts, created_at, available_at, leased, last, first, seq = row
    last_error = None if last is None else bytes(last).decode()
    first_error = None if first is None else bytes(first).decode()
    return PendingDelivery(
        delivery_id,
        step,
        kind,
        bytes(payload),
        attempts,
        created_at,
        available_at,
        leased,
        last_error,
        first_error,
        str(seq),
    )


async def _redrive(tx: Tx, ids: list[str]) -> list[str]:
    # Insert first (an id pending again is skipped by the conflict, even one inserted concurrently), then
    # delete the dead letters of the deliveries made: a letter is never removed without its delivery.
    rows = await tx.conn.fetch(
        "INSERT INTO motia_deliveries (id, step, kind, payload, available_at, created_at)"
        " SELECT id, step, kind, payload, $2, $2 FROM motia_dead_letters WHERE id = ANY($1::text[])"
        " ORDER BY id FOR UPDATE ON CONFLICT (id) DO NOTHING RETURNING id",
        ids,
        tx.now,
    )
    done = {row[0] for row in rows}
    if done:
        await tx.conn.execute("DELETE FROM motia_dead_letters WHERE id = ANY($1::text[])", list(done))
    tx.notify = bool(done)
    return [delivery_id for delivery_id in ids if delivery_id in done]


async def _purge(tx: Tx, ids: list[str]) -> list[str]:
    rows = await tx.conn.fetch("DELETE FROM motia_dead_letters WHERE id = ANY($1::text[]) RETURNING id", ids)
    done = {row[0] for row in rows}
    return [delivery_id for delivery_id in ids if delivery_id in done]


class PostgresOperations:
    """The operator methods on PostgreSQL; the host supplies ``_transact``, ``_fetch`` and ``_clock``."""

    _clock: Callable[[], float]

    if TYPE_CHECKING:  # provided by the host class

        async def _transact(
            self, body: Callable[..., Awaitable[T]], *args: Any, what: str = "write", events: bool = True
        ) -> T: ...
        async def _fetch(self, sql: str, *args: Any, what: str = "read") -> list[Any]: ...

    async def dead_letter_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        check_page(step, kind, after, limit)
        start = parse_dead_cursor(after)
        parameters: list[Any] = [limit]
        where = _filters(step, kind, parameters)
        if start is not None:
            parameters += start
            where.append(f'(failed_at, id COLLATE "C") > (${len(parameters) - 1}::float8, ${len(parameters)}::text)')
        sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM motia_dead_letters"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self._fetch(
            sql + ' ORDER BY failed_at, id COLLATE "C" LIMIT $1', *parameters, what="list dead letters"
        )
        return [_dead_letter_of(row) for row in rows]

    async def get_dead_letter(self, delivery_id: str) -> DeadLetter | None:
        sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM motia_dead_letters WHERE id = $1"
        rows = await self._fetch(sql, delivery_id, what="read a dead letter")
        return _dead_letter_of(rows[0]) if rows else None

    async def redrive_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        done: list[str] = await self._transact(_redrive, ids, what="redrive dead letters", events=False)
        return done

    async def purge_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        done: list[str] = await self._transact(_purge, ids, what="purge dead letters", events=False)
        return done

    async def pending_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PendingDelivery]:
        check_page(step, kind, after, limit)
        parameters: list[Any] = [limit, self._clock(), parse_seq_cursor(after)]
        where = ["seq > $3", *_filters(step, kind, parameters)]
        rows = await self._fetch(
            "SELECT id, step, kind, payload, attempts, created_at, available_at,"
            " CASE WHEN owner IS NOT NULL AND lease_until > $2 THEN lease_until END, last_error, first_error, seq"
            f" FROM motia_deliveries WHERE {' AND '.join(where)} ORDER BY seq LIMIT $1",
            *parameters,
            what="list pending deliveries",
        )
        return [_pending_of(row) for row in rows]
