"""``Feed``: the changes of one ``(stream, group)`` as one subscriber receives them, in ``seq`` order.

A subscriber (a WebSocket, an SSE response) has one feed per group it holds subscriptions on. The hub
hands every change of the group to the feed; the feed decides what the subscriber is sent, so that:

- **one message per change**: a change goes out once however many of the subscriber's subscriptions
  want it (a group subscription and one on the changed item): Motia's clients route it to both;
- **nothing missed, nothing twice** across a join: a join registers the feed *before* it reads the
  snapshot (or the history after ``since``), changes arriving meanwhile are buffered, and afterwards only
  those after the snapshot's ``seq`` are let through;
- **in order**: a sync is sent at its place in the group's sequence. When the subscriber already follows
  the group and the snapshot was read ahead of what the hub's tail has delivered (the tail lags the
  store), the sync waits until the changes before it have gone out; otherwise a change older than the
  sync would reach the client after it and undo it.

``cursor`` is the ``seq`` of the last change of the group the feed has passed (sent or not needed).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Protocol

from motia.state.backends.types import StreamChange
from motia.streams.protocol import ServerMessage, change_message

__all__ = ["Feed", "FeedSink", "FeedSubscription"]


class FeedSink(Protocol):
    """Where a feed's messages go (the subscriber)."""

    def send(self, message: ServerMessage) -> None: ...

    def lost(self, stream: str, group: str, reason: str) -> None:
        """The feed cannot stay exact (changes were missed or it fell too far behind): end the subscriber,
        whose client resumes by ``seq``."""


class FeedSubscription:
    """One subscription of a feed: the whole group (``item`` ``None``) or one item, wanting the changes
    after ``start``."""

    __slots__ = ("id", "item", "start")

    def __init__(self, subscription_id: str, item: str | None) -> None:
        self.id = subscription_id
        self.item = item
        self.start = 0

    def wants(self, change: StreamChange) -> bool:
        return change.seq > self.start and (self.item is None or self.item == change.item)


class Feed:
    """The ordered feed of one group to one subscriber (see the module docstring)."""

    __slots__ = ("_buffer", "_buffer_limit", "_pending", "cursor", "group", "joining", "sink", "stream", "subs")

    def __init__(self, sink: FeedSink, stream: str, group: str, *, buffer_limit: int = 10_000) -> None:
        self.sink = sink
        self.stream = stream
        self.group = group
        self.cursor: int | None = None
        self.subs: dict[str, FeedSubscription] = {}
        self.joining = 0
        self._buffer: list[StreamChange] = []
        self._buffer_limit = buffer_limit
        self._pending: list[tuple[int, FeedSubscription, ServerMessage]] = []

    @property
    def idle(self) -> bool:
        """No subscription and no join under way: the hub may forget the feed."""
        return not self.subs and not self.joining

    # -- changes from the hub -------------------------------------------------------------------------

    def on_change(self, change: StreamChange, message_of: Callable[[], ServerMessage]) -> None:
        """A change of the group, from the hub's tail (in ``seq`` order). ``message_of`` builds its
        message once for every feed that sends it."""
        if self.joining:
            self._buffer.append(change)
            if len(self._buffer) > self._buffer_limit:
                self._buffer.clear()
                self.sink.lost(self.stream, self.group, "too many changes arrived while joining")
            return
        self._process(change, message_of)

    def _process(self, change: StreamChange, message_of: Callable[[], ServerMessage]) -> None:
        cursor = self.cursor
        if cursor is None:  # nothing joined (a join that failed): nobody to send to
            return
        seq = change.seq
        if seq <= cursor:  # already in a snapshot or replay the subscriber got
            return
        if seq > cursor + 1:
            self.sink.lost(self.stream, self.group, f"changes {cursor + 1} to {seq - 1} of the group were missed")
            return
        pending = self._pending
        if pending:
            self._flush_pending(seq - 1)
        self.cursor = seq
        item = change.item
        for sub in self.subs.values():
            if seq > sub.start and (sub.item is None or sub.item == item):
                self.sink.send(message_of())
                break
        if pending:
            self._flush_pending(seq)

    def _flush_pending(self, upto: int) -> None:
        while self._pending and self._pending[0][0] <= upto:
            _, _, message = self._pending.pop(0)
            self.sink.send(message)

    # -- joins ----------------------------------------------------------------------------------------

    def begin_join(self) -> None:
        """A join starts reading the store: buffer the group's changes until :meth:`end_join`."""
        self.joining += 1

    def end_join(self) -> None:
        """The read is over (added or failed): pass the buffered changes on."""
        self.joining -= 1
        if self.joining or not self._buffer:
            return
        buffered, self._buffer = self._buffer, []
        for change in buffered:
            self._process(change, functools.partial(change_message, change))

    def add_synced(self, sub: FeedSubscription, seq: int, sync: ServerMessage) -> bool:
        """Add ``sub``, which starts from a snapshot at ``seq`` (``sync`` carries it). ``False`` (nothing
        added) when the snapshot is older than what the feed already passed: read it again."""
        cursor = self.cursor
        if cursor is not None and seq < cursor:
            return False
        sub.start = seq
        self.subs[sub.id] = sub
        if cursor is None:
            self.cursor = seq
            self.sink.send(sync)
        elif seq == cursor:
            self.sink.send(sync)
        else:  # the tail has not yet delivered the changes up to seq: send the sync after them
            self._pending.append((seq, sub, sync))
            self._pending.sort(key=lambda entry: entry[0])
        return True

    def add_replayed(self, sub: FeedSubscription, since: int, changes: Sequence[StreamChange]) -> bool:
        """Add ``sub``, resuming after ``since`` with the group's ``changes`` after it (from the history).
        ``False`` (nothing added) when the feed already passed changes after ``since`` that this
        subscriber may not have been sent: a full sync is needed instead."""
        cursor = self.cursor
        if cursor is not None and since < cursor:
            return False
        sub.start = since
        self.subs[sub.id] = sub
        if cursor is None:
            for change in changes:
                if sub.wants(change):
                    self.sink.send(change_message(change))
            self.cursor = changes[-1].seq if changes else since
        # else: every change after since is after the cursor, so still to come from the buffer or the tail
        return True

    def remove(self, subscription_id: str) -> bool:
        """Drop a subscription (and its sync if still waiting); ``False`` if it is not here."""
        sub = self.subs.pop(subscription_id, None)
        if sub is None:
            return False
        self._pending = [entry for entry in self._pending if entry[1] is not sub]
        return True
