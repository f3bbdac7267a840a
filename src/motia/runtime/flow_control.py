"""Keyed flow control at run time: rate limits checked when the worker claims (issue 18).

Keyed concurrency (``concurrency: {"key": ..., "limit": n}``) needs nothing here: ``enqueue`` gives each
delivery the order key ``key:<value>`` with ``n`` order slots (:func:`motia.runtime.queue.flow_order`), and
the store leases at most ``n`` deliveries of a key at once, oldest first, in every instance; a crashed
holder's slot comes back when its lease runs out.

Rate limits (``rate_limit: {"limit": n, "period": s, "key": ...}``) are counted here, in the store, so
that every instance shares them: each ``period`` is a fixed window (``floor(now / period)``, by the
instance's clock), and the handler starts of a ``(step, key, window)`` are one counter in the reserved
state scope :data:`RATE_SCOPE`, incremented atomically by the claims of every instance (an ``update``
with an ``increment``; its TTL removes it after the window). After a claim, the deliveries of a
rate-limited step are counted in one increment per ``(step, key)``: the first ones within the limit
start, the rest are *postponed* until their window opens (``backend.postpone``: not an attempt, not a
failure, never a dead letter), so a throttled key costs one store write per window and message, and the
worker never spins on it. A step-wide limit that is full also pauses this process's claims of that step
until the window opens.

Messages of a key start oldest first in each window, as claims take the oldest first; with several
instances claiming at once, two messages of a key may start in either order unless the key also has a
concurrency limit of 1 (whose order key then holds the younger behind a postponed one).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from motia.exceptions import EnqueueError
from motia.state import values as _values
from motia.state.backends.types import Delivery
from motia.steps.flow_control import RateLimit
from motia.steps.triggers import QueueTrigger

if TYPE_CHECKING:
    from motia.state.manager import StateManager
    from motia.steps.definition import Step

__all__ = ["RATE_SCOPE", "RateLimiter"]

logger = logging.getLogger("motia.runtime")

#: The reserved state scope of the rate-limit counters (``__motia.``: not listed, not seen by state triggers).
RATE_SCOPE = f"{_values.INTERNAL_SCOPE_PREFIX}rate-limits"
#: How long a window's counter outlives the window (clock skew between instances).
COUNTER_GRACE = 5.0
#: Postponed deliveries become claimable this long after their window opens: never a hair before it.
WINDOW_MARGIN = 0.001
#: The bucket of messages that lack their rate-limit key (sent before the key was configured).
NO_KEY = ""


class RateLimiter:
    """The rate limits of an app's queue steps, counted in ``state`` (shared by every instance)."""

    def __init__(self, steps: Iterable[Step], state: StateManager, *, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.clock = clock
        #: step -> topic -> its rate limit.
        self.limits: dict[str, dict[str, RateLimit]] = {}
        #: Steps whose only trigger is one queue trigger with a step-wide limit: pausable as a whole.
        self.pausable: set[str] = set()
        for step in steps:
            for trigger in step.triggers:
                if isinstance(trigger, QueueTrigger) and trigger.options.rate_limit is not None:
                    self.limits.setdefault(step.name, {})[trigger.topic] = trigger.options.rate_limit
            limits = self.limits.get(step.name, {})
            if len(step.triggers) == 1 and len(limits) == 1 and next(iter(limits.values())).key is None:
                self.pausable.add(step.name)
        #: step -> until when (this clock) its step-wide limit is known to be full.
        self.paused: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def is_paused(self, step: str) -> bool:
        until = self.paused.get(step)
        if until is None:
            return False
        if self.clock() >= until:
            del self.paused[step]
            return False
        return True

    def _bucket(self, delivery: Delivery) -> tuple[RateLimit, str] | None:
        """The rate limit and key of ``delivery``, or ``None`` when it has none (or cannot be read: the
        worker dead-letters such a delivery when it routes it)."""
        limits = self.limits.get(delivery.step)
        if not limits or delivery.kind != "queue":
            return None
        try:
            message = orjson.loads(delivery.payload)
        except orjson.JSONDecodeError:
            return None
        topic = message.get("topic") if isinstance(message, dict) else None
        limit = limits.get(topic) if isinstance(topic, str) else None
        if limit is None:
            return None
        if limit.key is None:
            return limit, NO_KEY
        try:
            return limit, limit.key.of(message.get("data"))
        except EnqueueError as exc:
            logger.warning("delivery %s: %s; counted with the other messages without one", delivery.id, exc)
            return limit, NO_KEY

    async def admit(self, deliveries: Sequence[Delivery]) -> tuple[list[Delivery], list[tuple[Delivery, float]]]:
        """Split claimed ``deliveries`` into those that may start now and ``(delivery, delay)`` pairs to
        postpone for ``delay`` seconds (until their window opens), counting the starts in the store.

        Raises what the store raises; nothing has started then (the caller's leases run out)."""
        now = self.clock()
        start: list[Delivery] = []
        buckets: dict[tuple[str, str], tuple[RateLimit, list[Delivery]]] = {}
        for delivery in deliveries:
            found = self._bucket(delivery)
            if found is None:
                start.append(delivery)
            else:
                limit, key = found
                buckets.setdefault((delivery.step, key), (limit, []))[1].append(delivery)
        postponed: list[tuple[Delivery, float]] = []
        # One increment per key, all at once: the store group-commits them (SQLite, PostgreSQL) or pipelines
        # them (Redis), so a claim over many keys costs about one write, not one per key.
        totals = await asyncio.gather(
            *(self._count(step, key, limit, len(waiting), now) for (step, key), (limit, waiting) in buckets.items())
        )
        for ((step, _), (limit, waiting)), total in zip(buckets.items(), totals, strict=True):
            window = math.floor(now / limit.period)
            opens = (window + 1) * limit.period
            room = max(0, limit.limit - (total - len(waiting)))
            start += waiting[:room]
            delay = max(opens - now, 0.0) + WINDOW_MARGIN
            postponed += [(delivery, delay) for delivery in waiting[room:]]
            if room < len(waiting) and step in self.pausable:
                self.paused[step] = opens
        return start, postponed

    async def _count(self, step: str, key: str, limit: RateLimit, starts: int, now: float) -> int:
        """Add ``starts`` to the counter of ``(step, key)``'s window at ``now``; return its new total."""
        window = math.floor(now / limit.period)
        counter = orjson.dumps([step, key, limit.period, window]).decode()
        result = await self.state.update(
            RATE_SCOPE,
            counter,
            [{"type": "increment", "path": "n", "value": starts}],
            ttl=limit.period + COUNTER_GRACE,
        )
        return _total(result.new_value)


def _total(value: Any) -> int:
    n = value.get("n") if isinstance(value, dict) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else 0
