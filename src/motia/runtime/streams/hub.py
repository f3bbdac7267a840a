"""``StreamHub``: one per app; tails the store's change log and fans each change out to local subscribers.

Every instance of an app (every ``motia run`` process, every worker) has its own hub, and every hub
reads the same store-wide log (:meth:`~motia.state.backends.base.StreamStore.stream_tail`) from where it
was at start-up. So a change made anywhere (another process on the SQLite file, another instance on
Redis, ``motia state``, a script) reaches the subscribers of every instance, in commit order per group.

The hub decodes nothing: each change's message is encoded once, embedding the stored bytes
(:func:`~motia.streams.protocol.change_message`), and only when some subscriber wants it.

The API connections use (the WebSocket endpoint, and the SSE endpoints)::

    subscriber = hub.open_subscriber(auth_context)   # one per connection
    refusal = await subscriber.join(request)         # a ClientRequest; None when joined
    frames = await subscriber.next_batch()           # stamped frames to write; [] once closed
    await subscriber.leave(subscription_id)
    await subscriber.aclose()                        # when the connection ends (runs on_leave)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from motia.runtime.state_triggers import IDLE_WAIT
from motia.runtime.streams.feed import Feed
from motia.runtime.streams.limits import DEFAULT_MAX_SUBSCRIPTIONS, DEFAULT_QUEUE_BYTES, DEFAULT_QUEUE_LIMIT
from motia.runtime.streams.subscriber import CLOSE_TOO_SLOW, Subscriber
from motia.runtime.tasks import cancel_and_wait
from motia.state.backends.types import StreamChange
from motia.streams.config import StreamDefinition, StreamSubscription
from motia.streams.manager import StreamManager
from motia.streams.protocol import ServerMessage, change_message

__all__ = [
    "DEFAULT_MAX_SUBSCRIPTIONS",
    "DEFAULT_QUEUE_BYTES",
    "DEFAULT_QUEUE_LIMIT",
    "StreamHub",
]

log = logging.getLogger("motia.streams")

#: Changes read from the log at once, and how long one read waits for a change.
TAIL_LIMIT = 1000
TAIL_WAIT = 1.0
#: Feeds handed changes between two yields to the event loop while fanning out a batch.
YIELD_EVERY = 2000
#: Back-off bounds after a failed read of the log.
MIN_BACKOFF = 0.05
MAX_BACKOFF = 5.0


def _no_context(definition: StreamDefinition, subscription: StreamSubscription, is_async: bool) -> Any:
    return None


class StreamHub:
    """The local subscribers of one app, fed from the store's change log (see the module docstring).

    ``context_factory(definition, subscription, is_async)`` makes the ``ctx`` passed to ``on_join`` /
    ``on_leave`` (the app gives one with its state and streams; ``is_async``: for an ``async def`` hook).
    The limits are per subscriber.
    """

    def __init__(
        self,
        manager: StreamManager,
        *,
        context_factory: Callable[[StreamDefinition, StreamSubscription, bool], Any] = _no_context,
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        max_subscriptions: int = DEFAULT_MAX_SUBSCRIPTIONS,
        tail_limit: int = TAIL_LIMIT,
        tail_wait: float = TAIL_WAIT,
    ) -> None:
        if queue_limit < 1 or queue_bytes < 1 or max_subscriptions < 1 or tail_limit < 1:
            raise ValueError("stream hub limits must be positive")
        self.manager = manager
        self.context_factory = context_factory
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self.max_subscriptions = max_subscriptions
        self.tail_limit = tail_limit
        self.tail_wait = tail_wait
        self.position = 0  #: the position of the last change fanned out
        self._feeds: dict[tuple[str, str], set[Feed]] = {}
        self._subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._failures = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def start(self) -> None:
        """Start tailing from the log's current end (subscribers sync from snapshots, so nothing older is
        needed). Raises when the store cannot be read: an app whose store is down does not start."""
        if self._task is not None:
            return
        self.position = await self.manager.backend.stream_position()
        self._task = asyncio.create_task(self._run(), name="motia stream hub")

    async def ensure_started(self) -> StreamHub:
        """Start on first use (an app nobody subscribes to never tails the log) and return the hub."""
        if self._task is None:
            async with self._start_lock:
                if self._task is None:
                    await self.start()
        return self

    async def close(self) -> None:
        """Stop tailing and close every subscriber (their connections end; ``on_leave`` runs as each
        connection finishes)."""
        task, self._task = self._task, None
        if task is not None:
            # Cancelled again until it ends: on Python 3.11 an asyncio.wait_for inside the store's wait can
            # swallow a cancellation that coincides with a wake-up, and the loop would then go on forever.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
        await cancel_and_wait(task, "the stream hub")
        self.close_subscribers()
        self._subscribers.clear()
        self._feeds.clear()

    def close_subscribers(self, code: int = 1001, reason: str = "the server is shutting down") -> None:
        """End every open connection's subscriber now, without waiting (a signal handler calls it): a
        graceful shutdown waits for open responses, and an SSE response would otherwise never end."""
        for subscriber in list(self._subscribers):
            subscriber.close(code, reason)

    def open_subscriber(
        self,
        auth_context: Any = None,
        *,
        queue_limit: int | None = None,
        queue_bytes: int | None = None,
        max_subscriptions: int | None = None,
    ) -> Subscriber:
        """A subscriber for one connection, whose hooks see ``auth_context``; limits default to the hub's."""
        subscriber = Subscriber(
            self,
            auth_context,
            queue_limit=queue_limit or self.queue_limit,
            queue_bytes=queue_bytes or self.queue_bytes,
            max_subscriptions=max_subscriptions or self.max_subscriptions,
            context_factory=self.context_factory,
        )
        self._subscribers.add(subscriber)
        return subscriber

    # -- the tail -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Read the log and fan out, forever: an error is logged and retried with back-off, never fatal."""
        backend = self.manager.backend
        backoff = MIN_BACKOFF
        while True:
            try:
                # A store that wakes this process for every process's commits (PostgreSQL's LISTEN) wakes
                # the tail at a change too: then an idle hub looks at the store only every IDLE_WAIT.
                wait = max(self.tail_wait, IDLE_WAIT) if backend.wakes_other_processes else self.tail_wait
                changes = await backend.stream_tail(self.position, limit=self.tail_limit, wait=wait)
                if not changes:  # idle: the moment to notice a log that went back
                    await self._check_log_went_back()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._failures += 1
                log.exception("reading the stream change log failed; retrying in %.2fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = MIN_BACKOFF
            work = 0
            for change in changes:
                self.position = change.position
                try:
                    work += self.fan_out(change)
                except Exception:  # a bug here must not stop every other change
                    log.exception(
                        "fanning out stream change %s of %s/%s failed", change.seq, change.stream, change.group
                    )
                if work >= YIELD_EVERY:  # a large batch to many subscribers must not stall the loop
                    work = 0
                    await asyncio.sleep(0)
            if changes:
                await asyncio.sleep(0)  # let the connections write

    async def _check_log_went_back(self) -> None:
        """A log whose newest position is behind ours lost its data (a Redis server restarted without it,
        a store replaced): its new changes would never be read, and their ``seq`` restart below what
        subscribers hold. Follow the new log, and close every subscriber so its client resumes (a cursor
        the store no longer knows gets a full, reset sync)."""
        newest = await self.manager.backend.stream_position()
        if newest >= self.position:
            return
        log.warning(
            "the stream change log went back from position %d to %d (the store lost or replaced its data): "
            "following it from there and closing %d subscriber(s) so they resume",
            self.position,
            newest,
            len(self._subscribers),
        )
        self.position = newest
        self.close_subscribers(CLOSE_TOO_SLOW, "the stream store was reset; resume by seq")

    def fan_out(self, change: StreamChange) -> int:
        """Hand ``change`` to every feed of its group (its message is built at most once); returns how
        many feeds that was."""
        feeds = self._feeds.get((change.stream, change.group))
        if not feeds:
            return 0
        built: list[ServerMessage] = []

        def message_of() -> ServerMessage:
            if not built:
                built.append(change_message(change))
            return built[0]

        for feed in list(feeds):
            feed.on_change(change, message_of)
        return len(feeds)

    # -- the registry of feeds (called by subscribers) ----------------------------------------------------

    def _add_feed(self, feed: Feed) -> None:
        self._feeds.setdefault((feed.stream, feed.group), set()).add(feed)

    def _drop_feed(self, feed: Feed) -> None:
        feeds = self._feeds.get((feed.stream, feed.group))
        if feeds is None:
            return
        feeds.discard(feed)
        if not feeds:
            del self._feeds[(feed.stream, feed.group)]

    def _forget_subscriber(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
