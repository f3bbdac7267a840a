"""What operators do to the memory backend's deliveries: list dead letters and pending deliveries by page,
inspect, redrive and purge dead letters (:class:`~motia.state.backends.base.DeliveryStore`'s operator
methods). A mixin of :class:`~motia.state.backends.memory.MemoryBackend`, which provides the lock, the clock
and the tables; :class:`Pending` (a delivery not yet settled) lives here because both use it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from motia.state.backends._operate import check_ids, check_page, parse_dead_cursor, parse_seq_cursor
from motia.state.backends.types import DeadLetter, NewDelivery, PendingDelivery

__all__ = ["MemoryOperations", "Pending"]

_numbers = itertools.count(1)


class Pending:
    """A delivery not yet settled; ``number`` orders deliveries as they were added (the page cursor)."""

    __slots__ = (
        "new",
        "attempts",
        "available_at",
        "owner",
        "lease_until",
        "created_at",
        "first_error",
        "last_error",
        "number",
    )

    def __init__(self, new: NewDelivery, created_at: float) -> None:
        self.new = new
        self.attempts = 0
        self.available_at = created_at + new.delay
        self.owner: str | None = None
        self.lease_until = 0.0
        self.created_at = created_at
        self.first_error: str | None = None
        self.last_error: str | None = None
        self.number = next(_numbers)


class MemoryOperations:
    """The operator methods in memory; the host class supplies ``_lock``, ``_clock``, ``_check_open``,
    ``_deliveries`` and ``_dead``."""

    _lock: threading.Lock
    _clock: Callable[[], float]
    _deliveries: dict[str, Pending]
    _dead: dict[str, DeadLetter]

    if TYPE_CHECKING:  # provided by the host class

        def _check_open(self) -> None: ...
        def _notify_listeners(self) -> None: ...

    async def dead_letter_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        check_page(step, kind, after, limit)
        start = parse_dead_cursor(after)
        with self._lock:
            self._check_open()
            letters = [
                letter
                for letter in self._dead.values()
                if (step is None or letter.step == step)
                and (kind is None or letter.kind == kind)
                and (start is None or (letter.failed_at, letter.id) > start)
            ]
        letters.sort(key=lambda letter: (letter.failed_at, letter.id))
        return letters[:limit]

    async def get_dead_letter(self, delivery_id: str) -> DeadLetter | None:
        with self._lock:
            self._check_open()
            return self._dead.get(delivery_id)

    async def redrive_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        with self._lock:
            self._check_open()
            now = self._clock()
            done = [i for i in ids if i in self._dead and i not in self._deliveries]
            for delivery_id in done:
                letter = self._dead.pop(delivery_id)
                new = NewDelivery(letter.id, letter.step, letter.kind, letter.payload)
                self._deliveries[delivery_id] = Pending(new, now)
        if done:
            self._notify_listeners()
        return done

    async def purge_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        ids = check_ids(delivery_ids)
        with self._lock:
            self._check_open()
            return [delivery_id for delivery_id in ids if self._dead.pop(delivery_id, None) is not None]

    async def pending_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PendingDelivery]:
        check_page(step, kind, after, limit)
        start = parse_seq_cursor(after)
        page: list[PendingDelivery] = []
        with self._lock:
            self._check_open()
            now = self._clock()
            for pending in sorted(self._deliveries.values(), key=lambda pending: pending.number):
                new = pending.new
                if pending.number <= start or (step is not None and new.step != step):
                    continue
                if kind is not None and new.kind != kind:
                    continue
                leased = pending.owner is not None and pending.lease_until > now
                page.append(
                    PendingDelivery(
                        new.id,
                        new.step,
                        new.kind,
                        new.payload,
                        pending.attempts,
                        pending.created_at,
                        pending.available_at,
                        pending.lease_until if leased else None,
                        pending.last_error,
                        pending.first_error,
                        str(pending.number),
                    )
                )
                if len(page) >= limit:
                    break
        return page
