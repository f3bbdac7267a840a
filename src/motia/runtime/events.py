"""``StateEventHub``: in-process fan-out of state change events to live subscribers (the console feed).

Publishers call :meth:`StateEventHub.publish` from any thread; each subscriber (one per open console
feed) gets every event published after it subscribed, on its own event loop, through a bounded queue.
A subscriber that falls behind loses the oldest undelivered events and is told how many (``missed``)
rather than slowing publishers down or growing without bound.

Publishers today: the delivery worker (each state event it delivers to a state trigger, through
:meth:`StateEventHub.record`, which copies nothing while nobody watches) and the console API (its own
writes, unless a trigger will show them). A runtime that publishes *every* committed change
sets :attr:`StateEventHub.durable`, and the console then stops publishing its own writes.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from pydantic_core import from_json

__all__ = ["StateEventHub", "Subscription"]

Event = dict[str, Any]

_CLOSED: Event = {}


class Subscription:
    """A live view of a hub's events: ``async for event in subscription`` (or ``await next()``).

    Created by :meth:`StateEventHub.subscribe`; already registered when returned, so nothing published
    afterwards is missed. Iteration ends when the hub or the subscription is closed.
    """

    def __init__(self, hub: StateEventHub, loop: asyncio.AbstractEventLoop, max_queue: int) -> None:
        self._hub = hub
        self._loop = loop
        self._queue: deque[Event] = deque()
        self._max_queue = max_queue
        self._wakeup = asyncio.Event()
        self._missed = 0
        self._closed = False

    def _push(self, event: Event) -> None:
        """Runs on the subscriber's loop."""
        if event is _CLOSED:
            self._closed = True
        elif len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self._missed += 1
            self._queue.append(event)
        else:
            self._queue.append(event)
        self._wakeup.set()

    def _deliver(self, event: Event) -> bool:
        """Hand ``event`` to the subscriber's loop from any thread; ``False`` if that loop is gone."""
        try:
            self._loop.call_soon_threadsafe(self._push, event)
        except RuntimeError:  # the loop is closed: the subscriber is gone
            return False
        return True

    async def next(self) -> Event | None:
        """The next event (with ``missed`` set when events were dropped before it), or ``None`` once closed."""
        while not self._queue:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        event = self._queue.popleft()
        if self._missed:
            event = {**event, "missed": self._missed}
            self._missed = 0
        return event

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop receiving events (idempotent)."""
        self._hub._unsubscribe(self)
        self._closed = True
        self._wakeup.set()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class StateEventHub:
    """Publish state events to every current subscriber; keep the last ``history`` for late joiners.

    Each event is a JSON-able dict shaped like a state trigger's input (``event_type``, ``group_id``,
    ``item_id``, ``old_value``, ``new_value``, ``version``, ``timestamp``); the hub adds ``id``, a
    number increasing per hub, used as the Server-Sent Events id.
    """

    def __init__(self, *, history: int = 100, max_queue: int = 1000) -> None:
        # Re-entrant: close() may run in a signal handler that interrupted publish() on the same thread.
        self._lock = threading.RLock()
        self._subscribers: set[Subscription] = set()
        #: Stamped events, or ``(id, event)`` as :meth:`record` and :meth:`record_payloads` kept them (the event,
        #: or its JSON payload, stamped when read).
        self._history: deque[Event | tuple[int, Mapping[str, Any] | bytes]] = deque(maxlen=history)
        self._ids = itertools.count(1)
        self._max_queue = max_queue
        self._closed = False
        #: ``True`` once the runtime publishes every committed state change here; until then writers
        #: that want to be seen (the console API) publish their own writes.
        self.durable = False

    def publish(self, event: Mapping[str, Any]) -> Event:
        """Send ``event`` to every subscriber; safe from any thread, never blocks. Returns it with its ``id``."""
        with self._lock:
            stamped: Event = {"id": next(self._ids), **event}
            if "timestamp" not in stamped:  # state events carry their commit time: no clock read for them
                stamped["timestamp"] = time.time()
            self._history.append(stamped)
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            if not subscriber._deliver(stamped):
                self._unsubscribe(subscriber)
        return stamped

    def record(self, event: Mapping[str, Any]) -> None:
        """:meth:`publish` for the delivery worker, which needs nothing back: while nobody is subscribed (the
        usual case), ``event`` is kept as it is with its ``id`` and copied into its stamped form only when the
        history is read, so an event nobody looks at costs no copy (issue 15). ``event`` must carry its
        ``timestamp`` and must not change afterwards (a state event decoded for this delivery)."""
        with self._lock:
            if not self._subscribers and "timestamp" in event:
                self._history.append((next(self._ids), event))
                return
        self.publish(event)

    def record_many(self, events: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`record` of each of ``events``, in order, under one lock while nobody is subscribed (the
        delivery worker records a claim's events together)."""
        with self._lock:
            if not self._subscribers and all("timestamp" in event for event in events):
                ids = self._ids
                self._history.extend([(next(ids), event) for event in events])
                return
        for event in events:
            self.record(event)

    def record_payloads(self, payloads: Sequence[bytes]) -> None:
        """:meth:`record_many` of state delivery payloads (the JSON of a state event, with its ``timestamp``), as
        the delivery worker has them: kept as they are while nobody is subscribed (the usual case), decoded only
        when the history is read, so an event nobody looks at costs no decoding (issue 15). Each payload must be
        one the handler's input was validated from (``validate_json``): it is decoded by the same parser."""
        with self._lock:
            if not self._subscribers:
                ids = self._ids
                self._history.extend([(next(ids), payload) for payload in payloads])
                return
        for payload in payloads:
            self.record(from_json(payload))

    def _stamped_history(self) -> deque[Event]:
        """The history with every event in its stamped form (those :meth:`record` and :meth:`record_payloads`
        kept as they were are copied or decoded now, once). Under the lock."""
        history = self._history
        for index, item in enumerate(history):
            if type(item) is tuple:
                ident, event = item
                fields: Mapping[str, Any] = from_json(event) if isinstance(event, bytes) else event
                history[index] = {"id": ident, **fields}
        return history  # type: ignore[return-value]

    def subscribe(self, *, after: int | None = None) -> tuple[Subscription, list[Event]]:
        """Register a subscriber on the running loop; also return the kept events with ``id > after``.

        ``after=None`` replays nothing. Registering and reading the history happen under one lock, so
        between the replayed events and the live ones nothing is lost or repeated.
        """
        subscription = Subscription(self, asyncio.get_running_loop(), self._max_queue)
        with self._lock:
            if self._closed:
                subscription._closed = True
            else:
                self._subscribers.add(subscription)
            replay = [] if after is None else [event for event in self._stamped_history() if event["id"] > after]
        return subscription, replay

    def recent(self) -> list[Event]:
        """The kept events, oldest first."""
        with self._lock:
            return list(self._stamped_history())

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)

    def close(self) -> None:
        """End every subscription (open feeds finish, so a server can stop without waiting on them).

        Safe from any thread and from a signal handler. Later subscriptions end at once.
        """
        with self._lock:
            self._closed = True
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            subscriber._deliver(_CLOSED)
