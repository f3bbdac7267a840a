"""What operators do to the Redis backend's deliveries (the functions of ``operate.lua``): dead letters and
pending deliveries listed by page, a dead letter read by id, redriven or purged. A mixin of
:class:`~motia.state.backends.redis.backend.RedisBackend`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from motia.state.backends._operate import check_ids, check_page, parse_dead_cursor, parse_seq_cursor
from motia.state.backends.types import DeadLetter, PendingDelivery

__all__ = ["RedisOperations", "dead_letter_of"]


def dead_letter_of(raw: bytes) -> DeadLetter:
    """A dead letter as the library stores it (JSON); ``first_error`` is absent from older letters."""
    fields = orjson.loads(raw)
    delivery_id, step, kind, payload, attempts, error, created_at, failed_at = fields[:8]
    first = fields[8] if len(fields) > 8 else None
    return DeadLetter(
        delivery_id, step, kind, payload.encode(), int(attempts), error, float(created_at), float(failed_at), first
    )


class RedisOperations:
    """The operator methods on Redis; the host supplies ``_call``, ``_write``, ``_token`` and ``_clock``."""

    _clock: Callable[[], float]
    _call: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]
    _token: Callable[[], str]

    if TYPE_CHECKING:  # provided by the host class

        def _notify_listeners(self) -> None: ...

    async def dead_letter_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        check_page(step, kind, after, limit)
        start = parse_dead_cursor(after)
        failed_at, after_id = ("", "") if start is None else (repr(start[0]), start[1])
        reply = await self._call("motia1_dead", step or "", kind or "", failed_at, after_id, limit)
        return [dead_letter_of(raw) for raw in reply]

    async def get_dead_letter(self, delivery_id: str) -> DeadLetter | None:
        raw = await self._call("motia1_dead_get", delivery_id)
        return None if raw is None else dead_letter_of(raw)

    async def redrive_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        reply = await self._write("motia1_redrive", self._token(), repr(float(self._clock())), *ids)
        done = [raw.decode() for raw in reply]
        if done:
            self._notify_listeners()
        return done

    async def purge_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        if not ids:
            return []
        reply = await self._write("motia1_purge_dead", self._token(), *ids)
        return [raw.decode() for raw in reply]

    async def pending_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PendingDelivery]:
        check_page(step, kind, after, limit)
        start = parse_seq_cursor(after)
        now = repr(float(self._clock()))
        reply = await self._call("motia1_pending_page", now, step or "", kind or "", start, limit)
        page = []
        for raw in reply:
            fields = orjson.loads(raw)
            delivery_id, step_name, kind_name, payload, attempts, created, available, leased, last, first, number = (
                fields
            )
            page.append(
                PendingDelivery(
                    delivery_id,
                    step_name,
                    kind_name,
                    payload.encode(),
                    int(attempts),
                    float(created),
                    float(available),
                    None if leased is None else float(leased),
                    last,
                    first,
                    str(int(number)),
                )
            )
        return page
