"""Streams in memory: the :class:`~motia.state.backends.base.StreamStore` half of the memory backend.

A mixin of :class:`~motia.state.backends.memory.MemoryBackend`, which provides the lock, the clock and
the delivery table; kept apart so that each module holds one concept.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from motia.exceptions import StateConflictError
from motia.state.backends._events import stream_deliveries
from motia.state.backends._waiters import CommitWaiters
from motia.state.backends.types import NewDelivery, Record, StreamChange, StreamTriggerSubscription
from motia.state.observe import current_trace

#: The tail keeps at least this many changes, and every change younger than LOG_AGE seconds.
LOG_KEEP = 10_000
LOG_AGE = 60.0


class _Group:
    __slots__ = ("history", "items", "seq", "sorted_ids")

    def __init__(self) -> None:
        self.items: dict[str, Record] = {}
        self.sorted_ids: list[str] = []
        self.seq = 0
        self.history: deque[StreamChange] = deque()


class MemoryStreams:
    """The stream contract in memory; the host class supplies ``_lock``, ``_clock``, ``_check_open`` and
    ``_add_deliveries``."""

    _lock: threading.Lock
    _clock: Callable[[], float]

    if TYPE_CHECKING:  # provided by the host class

        def _check_open(self) -> None: ...
        def _add_deliveries(self, deliveries: Sequence[NewDelivery], now: float) -> None: ...
        def _notify_stream_listeners(self) -> None: ...
        def _notify_listeners(self) -> None: ...

    def _init_streams(self) -> None:
        self._stream_groups: dict[tuple[str, str], _Group] = {}
        self._stream_log: deque[StreamChange] = deque()
        self._stream_position = 0
        self._stream_subscriptions: dict[StreamTriggerSubscription, None] = {}
        self._stream_waiters = CommitWaiters()

    def _group(self, stream: str, group: str) -> _Group:
        bucket = self._stream_groups.get((stream, group))
        if bucket is None:
            bucket = self._stream_groups[(stream, group)] = _Group()
        return bucket

    def _record_change(
        self,
        bucket: _Group,
        stream: str,
        group: str,
        item: str | None,
        kind: str,
        old: bytes | None,
        new: bytes | None,
        history: int,
    ) -> tuple[StreamChange, bool]:
        """Under the lock: number the change, keep it, make its deliveries. Returns it and whether any
        delivery was made."""
        now = self._clock()
        bucket.seq += 1
        self._stream_position += 1
        change = StreamChange(self._stream_position, stream, group, item, bucket.seq, kind, old, new, now)
        bucket.history.append(change)
        while len(bucket.history) > history:
            bucket.history.popleft()
        log = self._stream_log
        log.append(change)
        while len(log) > LOG_KEEP and log[0].timestamp < now - LOG_AGE:
            log.popleft()
        deliveries = stream_deliveries(self._stream_subscriptions, change, current_trace.get())
        if deliveries:
            self._add_deliveries(deliveries, now)
        return change, bool(deliveries)

    def _committed(self, delivered: bool) -> None:
        """Outside the lock, after a change."""
        self._stream_waiters.wake()
        self._notify_stream_listeners()
        if delivered:
            self._notify_listeners()

    async def stream_get(self, stream: str, group: str, item: str) -> Record | None:
        with self._lock:
            self._check_open()
            bucket = self._stream_groups.get((stream, group))
            return None if bucket is None else bucket.items.get(item)

    async def stream_snapshot(self, stream: str, group: str, item: str | None) -> tuple[int, list[Record]]:
        with self._lock:
            self._check_open()
            bucket = self._stream_groups.get((stream, group))
            if bucket is None:
                return 0, []
            if item is not None:
                record = bucket.items.get(item)
                return bucket.seq, [] if record is None else [record]
            return bucket.seq, [bucket.items[key] for key in bucket.sorted_ids]

    async def stream_groups(self, stream: str) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted(
                group for (name, group), bucket in self._stream_groups.items() if name == stream and bucket.items
            )

    async def stream_names(self) -> list[str]:
        with self._lock:
            self._check_open()
            return sorted({name for (name, _), bucket in self._stream_groups.items() if bucket.items})

    async def stream_write(
        self, stream: str, group: str, item: str, data: bytes | None, *, if_version: int | None, history: int
    ) -> StreamChange | None:
        with self._lock:
            self._check_open()
            bucket = self._group(stream, group)
            current = bucket.items.get(item)
            version = 0 if current is None else current.version
            if if_version is not None and if_version != version:
                raise StateConflictError(
                    f"stream {stream!r} item {group!r}/{item!r} is at version {version}, not {if_version}",
                    expected=if_version,
                    actual=version,
                )
            if data is None:
                if current is None:
                    return None
                del bucket.items[item]
                del bucket.sorted_ids[bisect.bisect_left(bucket.sorted_ids, item)]
                change, delivered = self._record_change(
                    bucket, stream, group, item, "delete", current.data, None, history
                )
            else:
                if current is None:
                    bisect.insort(bucket.sorted_ids, item)
                bucket.items[item] = Record(item, data, version + 1, None)
                kind = "create" if current is None else "update"
                old = None if current is None else current.data
                change, delivered = self._record_change(bucket, stream, group, item, kind, old, data, history)
        self._committed(delivered)
        return change

    async def stream_send(
        self, stream: str, group: str, item: str | None, event: bytes, *, history: int
    ) -> StreamChange:
        with self._lock:
            self._check_open()
            bucket = self._group(stream, group)
            change, delivered = self._record_change(bucket, stream, group, item, "event", None, event, history)
        self._committed(delivered)
        return change

    async def stream_history(self, stream: str, group: str, *, after: int, limit: int) -> list[StreamChange] | None:
        with self._lock:
            self._check_open()
            bucket = self._stream_groups.get((stream, group))
            seq = 0 if bucket is None else bucket.seq
            if after > seq:
                return None
            if after == seq:
                return []
            if bucket is None or not bucket.history or bucket.history[0].seq > after + 1:
                return None
            start = after + 1 - bucket.history[0].seq
            return [bucket.history[i] for i in range(start, min(len(bucket.history), start + limit))]

    async def stream_position(self) -> int:
        with self._lock:
            self._check_open()
            return self._stream_position

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[StreamChange]:
        deadline = time.monotonic() + wait
        while True:
            waiter = self._stream_waiters.register()
            with self._lock:
                self._check_open()
                found = self._tail(after, limit)
            if found:
                self._stream_waiters.discard(waiter)
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stream_waiters.discard(waiter)
                return []
            await self._stream_waiters.wait(waiter, remaining)

    def _tail(self, after: int, limit: int) -> list[StreamChange]:
        log = self._stream_log
        if not log or log[-1].position <= after:
            return []
        # positions are consecutive in memory: index by offset from the oldest kept
        start = max(0, after + 1 - log[0].position)
        return [log[i] for i in range(start, min(len(log), start + limit))]

    async def add_stream_subscriptions(self, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
        with self._lock:
            self._check_open()
            self._stream_subscriptions.update(dict.fromkeys(subscriptions))

    def _forget_stream_subscriptions(self, step: str) -> None:
        """Under the lock: retention forgets ``step``."""
        for subscription in [sub for sub in self._stream_subscriptions if sub.step == step]:
            del self._stream_subscriptions[subscription]

    def _close_streams(self) -> None:
        self._stream_groups.clear()
        self._stream_log.clear()
        self._stream_waiters.wake()
