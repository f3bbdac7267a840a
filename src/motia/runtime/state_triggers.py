"""State triggers: which steps subscribe to which changes, and the dispatcher that turns the store's
change events (its transactional outbox) into one durable delivery per subscribing step.

The store records each change in the transaction of the write that caused it; the dispatcher only
moves events from the outbox to deliveries, atomically and exactly once even with several processes
dispatching. So an acknowledged write always reaches its triggers, whenever (and wherever) dispatch runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from motia.runtime.types import StateTriggerInput
from motia.state import values as _values
from motia.state.backends.types import Subscription
from motia.steps.triggers import StateTrigger

if TYPE_CHECKING:
    from motia.state.backends.base import StateBackend
    from motia.steps.definition import Step

__all__ = [
    "EventDispatcher",
    "decode_state_event",
    "state_input",
    "state_input_json",
    "state_triggers",
    "subscriptions",
]

logger = logging.getLogger("motia.runtime")

#: Events moved from the outbox per transaction.
DISPATCH_BATCH = 1000
#: The longest an idle dispatcher or worker waits without looking at the store, when the store wakes it for
#: every process's commits (``backend.wakes_other_processes``): a safety net only, nothing waits for it.
IDLE_WAIT = 10.0


def state_triggers(step: Step) -> list[StateTrigger]:
    return [trigger for trigger in step.triggers if isinstance(trigger, StateTrigger)]


def subscriptions(steps: Iterable[Step]) -> list[Subscription]:
    """One subscription per state trigger (a step with two matching triggers still gets one delivery)."""
    return [Subscription(step.name, trigger.scope, trigger.key) for step in steps for trigger in state_triggers(step)]


#: The handler input built from a state delivery's decoded payload; ``ValidationError`` if it is not one.
#: ``StateTriggerInput.model_validate`` without its Python wrapper, nor one of ours: the same validation
#: (aliases, types, an error naming the bad field), about a quarter fewer instructions per state delivery's
#: input (issue 15). A hand-made fast path (type checks, then the model's attributes set directly) measured
#: no cheaper than this validator, so there is none.
state_input: Callable[[Any], StateTriggerInput] = StateTriggerInput.__pydantic_validator__.validate_python
#: The same from a state delivery's payload, validated from its JSON (pydantic's parser: ints of any size kept
#: exact, as :func:`motia.state.values.decode` keeps them), without decoding it to a dict first: ~3,300
#: instructions fewer per state delivery (issue 15).
state_input_json: Callable[[bytes], StateTriggerInput] = StateTriggerInput.__pydantic_validator__.validate_json


def decode_state_event(payload: bytes) -> StateTriggerInput:
    """The handler input of a state delivery's payload (see ``StateBackend.dispatch_events``)."""
    return state_input(_values.decode(payload))


async def wait_for(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds pass, whichever is first."""
    if event.is_set():  # under load it often is: no timer to arm and cancel
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


class EventDispatcher:
    """Moves recorded events to deliveries for ``subscriptions``, woken by the store's commits (this process's;
    every process's where the store tells, ``backend.wakes_other_processes``) and else a poll timer.

    Runs in every app, even one without state triggers: another process (or ``motia state`` from a
    terminal) may have enabled events on the store, and their outbox must not grow forever. All the
    processes sharing a store must run the same steps: a dispatcher routes each event to the
    subscriptions *it* knows. ``subscriptions`` may grow while running (``motia.testing`` adds some).
    """

    def __init__(
        self,
        backend: StateBackend,
        subscriptions: list[Subscription],
        *,
        wake: asyncio.Event,
        poll_interval: float,
        batch_window: float,
        on_error: Callable[[BaseException], float],
        after_cycle: Callable[[], None],
    ) -> None:
        self.backend = backend
        self.subscriptions = subscriptions
        self.wake = wake
        self.poll_interval = poll_interval
        self.batch_window = batch_window
        self._on_error = on_error
        self._after_cycle = after_cycle

    async def dispatch_all(self) -> int:
        """Dispatch until the outbox is empty; return how many events were consumed."""
        total = 0
        while True:
            consumed = await self.backend.dispatch_events(tuple(self.subscriptions), limit=DISPATCH_BATCH)
            total += consumed
            if consumed < DISPATCH_BATCH:
                return total

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        woken = True
        busy_until = -math.inf  # when the last cycle that consumed events ended
        while True:
            self.wake.clear()
            try:
                consumed = await self.dispatch_all()
            except Exception as exc:  # any failure (a busy or failing store): say so, wait, try again (#4)
                await asyncio.sleep(self._on_error(exc))
                continue
            if consumed or woken:  # new deliveries, or a local commit that may have enqueued some
                self._after_cycle()
            if consumed:
                busy_until = loop.time()
            # A store that tells this process of every process's commits needs no polling: events come only
            # with commits (TTL expiries too: the sweep's), and their notification wakes this loop.
            await wait_for(self.wake, IDLE_WAIT if self.backend.wakes_other_processes else self.poll_interval)
            woken = self.wake.is_set()
            if woken and self.batch_window > 0 and loop.time() - busy_until < self.batch_window:
                # Woken by a local commit within a window of the last dispatch that moved events: a
                # burst of writes is on, so let the writes of the next moment join this batch. One
                # dispatch per burst instead of one per write is most of what the outbox costs. A lone
                # write (light load) is dispatched at once: waiting would only add to its latency.
                await asyncio.sleep(self.batch_window)


def matching(triggers: Sequence[StateTrigger], event: StateTriggerInput) -> list[StateTrigger]:
    """The triggers of one step that match ``event``'s scope and key."""
    return [t for t in triggers if (t.scope in (None, event.group_id)) and (t.key in (None, event.item_id))]
