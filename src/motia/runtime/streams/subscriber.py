"""``Subscriber``: one connection's subscriptions and its bounded queue of messages to send.

A WebSocket holds one subscriber for its lifetime (many subscriptions); an SSE response holds one with a
single subscription. The connection reads frames off :meth:`Subscriber.next_batch` and writes them; the
hub's tail and the joins put messages in with :meth:`Subscriber.send`, which never blocks: a connection
whose client does not keep up is closed once its queue passes the limit (the client resumes by ``seq``),
so one slow client never holds back the others or grows the server's memory.

Each frame is stamped as it is queued: ``timestamp`` is ``max(now in ms, previous + 1)``, strictly
increasing per connection, because Motia's clients drop a message that is not newer than the last one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from motia.exceptions import MotiaError, StreamNotFoundError
from motia.runtime.streams.feed import Feed, FeedSubscription
from motia.runtime.streams.hooks import call_hook, is_async_hook
from motia.state.backends.types import StreamChange
from motia.streams.config import StreamDefinition, StreamSubscription
from motia.streams.protocol import (
    STREAM_ACCESS_DENIED,
    STREAM_NOT_FOUND,
    STREAM_UNAVAILABLE,
    TOO_MANY_SUBSCRIPTIONS,
    ClientRequest,
    ServerMessage,
    sync_message,
)

if TYPE_CHECKING:
    from motia.runtime.streams.hub import StreamHub

__all__ = ["CLOSE_TOO_SLOW", "Frame", "JoinRefusal", "Subscriber"]

log = logging.getLogger("motia.streams")

#: WebSocket close code when the subscriber had to be dropped (too slow, or changes missed): 1013 "try
#: again later"; the client reconnects and resumes by ``seq``.
CLOSE_TOO_SLOW = 1013

#: Changes asked for at once when resuming; past it a full sync is cheaper.
HISTORY_LIMIT = 10_000


class Frame(NamedTuple):
    """A stamped message, ready to send: ``text`` is the JSON; ``event`` and ``seq`` are for SSE."""

    text: str
    event: str
    seq: int | None


class JoinRefusal(NamedTuple):
    """Why a join was refused (``code`` of :mod:`motia.streams.protocol`); nothing was subscribed."""

    code: str
    message: str


class _Joined(NamedTuple):
    feed: Feed
    subscription: StreamSubscription
    definition: StreamDefinition


class _Stamps:
    """The highest ``timestamp`` any connection of this process has sent (see ``Subscriber.__init__``)."""

    highest = 0


_stamps = _Stamps()


class Subscriber:
    """One connection's subscriptions; built by :meth:`StreamHub.open_subscriber`.

    The API a connection uses: :meth:`join` / :meth:`leave` (one at a time: joins wait for each other),
    :meth:`next_batch` to get frames to write, :meth:`send` to queue a message of its own (an error),
    and :meth:`aclose` when the connection ends (runs ``on_leave`` for what was still joined).
    ``closed``, ``close_code`` and ``close_reason`` say whether and why the subscriber ended itself.
    """

    def __init__(
        self,
        hub: StreamHub,
        auth_context: Any,
        *,
        queue_limit: int,
        queue_bytes: int,
        max_subscriptions: int,
        context_factory: Callable[[StreamDefinition, StreamSubscription, bool], Any],
    ) -> None:
        self.hub = hub
        self.auth_context = auth_context
        self.queue_limit = queue_limit
        self.queue_bytes = queue_bytes
        self.max_subscriptions = max_subscriptions
        self._context_factory = context_factory
        self._queue: deque[Frame] = deque()
        self._queued_bytes = 0
        self._waiter: asyncio.Future[None] | None = None
        self._closed = asyncio.Event()
        # A new connection stamps after every earlier one of this process: Motia's clients keep their last
        # timestamp across a reconnect, and a burst may have pushed an earlier socket's stamps past the clock.
        self._last_timestamp = _stamps.highest
        self._feeds: dict[tuple[str, str], Feed] = {}
        self._joined: dict[str, _Joined] = {}
        self._lock = asyncio.Lock()
        self.closed = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._left = False

    @property
    def subscriptions(self) -> Mapping[str, StreamSubscription]:
        """The subscriptions joined, by subscription id."""
        return {key: joined.subscription for key, joined in self._joined.items()}

    # -- the queue --------------------------------------------------------------------------------------

    def send(self, message: ServerMessage) -> None:
        """Stamp ``message`` and queue it; past the queue's limits, close the subscriber instead."""
        if self.closed:
            return
        queue = self._queue
        if queue and (len(queue) >= self.queue_limit or self._queued_bytes >= self.queue_bytes):
            self.close(
                CLOSE_TOO_SLOW,
                f"too slow: {len(queue)} messages ({self._queued_bytes} bytes) waiting to be sent; resume by seq",
            )
            return
        now = time.time_ns() // 1_000_000
        timestamp = now if now > self._last_timestamp else self._last_timestamp + 1
        self._last_timestamp = timestamp
        if timestamp > _stamps.highest:
            _stamps.highest = timestamp
        text = message.stamp(timestamp)
        queue.append(Frame(text, message.event, message.seq))
        self._queued_bytes += len(text)
        self._wake_writer()

    def _wake_writer(self) -> None:
        # A bare future rather than an asyncio.Event: this runs once per message per connection.
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def next_batch(self, limit: int = 256) -> list[Frame]:
        """Wait for queued frames and take up to ``limit`` of them, oldest first; ``[]`` once closed."""
        queue = self._queue
        while not queue:
            if self.closed:
                return []
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if len(queue) == 1:
            frame = queue.popleft()
            self._queued_bytes -= len(frame.text)
            return [frame]
        batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
        size = 0
        for frame in batch:
            size += len(frame.text)
        self._queued_bytes -= size
        return batch

    @property
    def queued(self) -> int:
        return len(self._queue)

    def lost(self, stream: str, group: str, reason: str) -> None:
        log.warning("stream subscriber dropped on %s/%s: %s", stream, group, reason)
        self.close(CLOSE_TOO_SLOW, f"{stream}/{group}: {reason}; resume by seq")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """End the subscriber now: it leaves the hub and its queue is dropped (the connection closes with
        ``code``/``reason``). Hooks run in :meth:`aclose`, which the connection calls when it ends."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.close_reason = reason
        for feed in self._feeds.values():
            self.hub._drop_feed(feed)
        self._feeds.clear()
        self.hub._forget_subscriber(self)
        self._queue.clear()
        self._queued_bytes = 0
        self._wake_writer()
        self._closed.set()

    async def wait_closed(self) -> None:
        """Return once the subscriber is closed (by :meth:`close`, the hub, or its own limits)."""
        await self._closed.wait()

    async def aclose(self) -> None:
        """Close, and run ``on_leave`` for every subscription still joined (once)."""
        self.close(self.close_code or 1000, self.close_reason or "")
        if self._left:
            return
        self._left = True
        joined, self._joined = list(self._joined.values()), {}
        for entry in joined:
            await self._on_leave(entry.definition, entry.subscription)

    # -- joins and leaves -------------------------------------------------------------------------------

    async def join(self, request: ClientRequest) -> JoinRefusal | None:
        """Subscribe as ``request`` asks: check the stream and ``can_access``, then queue the sync (or the
        replay after ``since``) and, from then on, every change the subscription wants. ``None`` when
        joined; else why not, and nothing was subscribed (the caller tells the client)."""
        async with self._lock:
            if self.closed:
                return JoinRefusal(STREAM_UNAVAILABLE, "the connection is closing")
            try:
                definition = self.hub.manager.definition(request.stream_name)
            except StreamNotFoundError as exc:
                return JoinRefusal(STREAM_NOT_FOUND, str(exc))
            if request.subscription_id in self._joined:  # the same id again replaces it (as Motia does)
                await self._leave(request.subscription_id)
            if len(self._joined) >= self.max_subscriptions:
                return JoinRefusal(
                    TOO_MANY_SUBSCRIPTIONS, f"a connection may hold at most {self.max_subscriptions} subscriptions"
                )
            subscription = StreamSubscription(
                group_id=request.group_id,
                id=request.item_id,
                stream_name=request.stream_name,
                subscription_id=request.subscription_id,
            )
            if not await self._allowed(definition, subscription):
                return JoinRefusal(STREAM_ACCESS_DENIED, "access denied")
            if not await self._on_join(definition, subscription):
                return JoinRefusal(STREAM_ACCESS_DENIED, "access denied by on_join")
            refusal: JoinRefusal | None = None
            if self.closed:
                refusal = JoinRefusal(STREAM_UNAVAILABLE, "the connection is closing")
            else:
                feed = self._feed(request.stream_name, request.group_id)
                sub = FeedSubscription(request.subscription_id, request.item_id)
                feed.begin_join()
                try:
                    await self._start(feed, sub, request)
                except (MotiaError, OSError) as exc:
                    log.warning("stream join of %s/%s failed: %s", request.stream_name, request.group_id, exc)
                    refusal = JoinRefusal(STREAM_UNAVAILABLE, f"the stream store failed: {exc}")
                finally:
                    feed.end_join()
                    if feed.idle:
                        self._forget(feed)
            if refusal is not None or self.closed:  # failed, or dropped while joining (too slow already)
                await self._on_leave(definition, subscription)  # on_join ran: presence stays balanced
                return refusal
            self._joined[request.subscription_id] = _Joined(feed, subscription, definition)
            return None

    async def leave(self, subscription_id: str) -> bool:
        """Unsubscribe (running ``on_leave``); ``False`` when no such subscription is joined."""
        async with self._lock:
            return await self._leave(subscription_id)

    async def _leave(self, subscription_id: str) -> bool:
        entry = self._joined.pop(subscription_id, None)
        if entry is None:
            return False
        entry.feed.remove(subscription_id)
        if entry.feed.idle:
            self._forget(entry.feed)
        await self._on_leave(entry.definition, entry.subscription)
        return True

    async def _start(self, feed: Feed, sub: FeedSubscription, request: ClientRequest) -> None:
        manager = self.hub.manager
        stream, group, item = request.stream_name, request.group_id, request.item_id
        reset = False
        if request.since is not None:
            changes = await manager.history(stream, group, request.since, limit=HISTORY_LIMIT)
            if (
                changes is not None
                and len(changes) < HISTORY_LIMIT
                and self._fits(changes)
                and feed.add_replayed(sub, request.since, changes)
            ):
                return
            reset = True
        for _ in range(5):
            seq, data = await manager.snapshot(stream, group, item)
            payload = data if item is None else (data[0] if data else None)
            if feed.add_synced(sub, seq, sync_message(stream, group, item, seq, payload, reset=reset)):
                return
        raise MotiaError(f"the snapshot of {stream}/{group} kept lagging behind its changes")

    def _fits(self, changes: list[StreamChange]) -> bool:
        """Whether a replay fits the queue's room: one that does not would close the subscriber as too slow
        at once, and its client would resume from the same ``seq`` again, forever; a (reset) sync is one
        message instead."""
        room = self.queue_limit - len(self._queue)
        size = sum(len(change.new_data or change.old_data or b"") for change in changes)
        return len(changes) < room and self._queued_bytes + size < self.queue_bytes

    def _feed(self, stream: str, group: str) -> Feed:
        feed = self._feeds.get((stream, group))
        if feed is None:
            feed = self._feeds[(stream, group)] = Feed(self, stream, group, buffer_limit=self.queue_limit * 10)
            self.hub._add_feed(feed)
        return feed

    def _forget(self, feed: Feed) -> None:
        if self._feeds.get((feed.stream, feed.group)) is feed:
            del self._feeds[(feed.stream, feed.group)]
            self.hub._drop_feed(feed)

    # -- hooks ------------------------------------------------------------------------------------------

    async def _allowed(self, definition: StreamDefinition, subscription: StreamSubscription) -> bool:
        """``can_access`` of the stream (everyone when it has none). Fails closed: an error denies."""
        if definition.can_access is None:
            return True
        try:
            return bool(await call_hook(definition.can_access, subscription, self.auth_context))
        except Exception:
            log.exception("can_access of stream %r raised: the join is denied", definition.name)
            return False

    async def _on_join(self, definition: StreamDefinition, subscription: StreamSubscription) -> bool:
        """Run ``on_join`` before anything is sent, as Motia does: it may refuse the join by returning
        ``{"unauthorized": True}`` (or an object whose ``unauthorized`` is true), and refuses it by raising
        (logged): hooks fail closed."""
        hook = definition.on_join
        if hook is None:
            return True
        try:
            ctx = self._context_factory(definition, subscription, is_async_hook(hook))
            result = await call_hook(hook, subscription, ctx, self.auth_context)
        except Exception:
            log.exception("on_join of stream %r raised: the join is denied", definition.name)
            return False
        refused = result.get("unauthorized") if isinstance(result, Mapping) else getattr(result, "unauthorized", None)
        return refused is not True

    async def _on_leave(self, definition: StreamDefinition, subscription: StreamSubscription) -> None:
        hook = definition.on_leave
        if hook is None:
            return
        try:
            ctx = self._context_factory(definition, subscription, is_async_hook(hook))
            await call_hook(hook, subscription, ctx, self.auth_context)
        except Exception:  # logged; it never ends the connection
            log.exception("on_leave of stream %r raised", definition.name)
