"""Streams in Redis: the :class:`~motia.state.backends.base.StreamStore` half of
:class:`~motia.state.backends.redis.RedisBackend`, a mixin kept apart so that each module holds one concept.

Each change is one call of a function of ``streams.lua`` (appended to the store's function library): it
checks ``if_version``, stores or deletes the item, numbers the change (the group's ``seq``, the store's
``position``), keeps it in the group's history and the store-wide log, and makes the stream-trigger
deliveries, atomically. Its timestamp is the writer's clock, as on every backend (and as state events are
stamped); the log is trimmed by the server's clock, the one every instance shares, so that a writer
whose clock runs ahead never drops changes younger than a minute.

Waiting for the log (:meth:`RedisStreams.stream_tail`) is a blocking ``XREAD`` on a connection of its own:
the server answers it as soon as any instance commits a change, this one included (the commit's ``XADD``
wakes the reader before the writer even has its reply), so it needs no local waiter and costs nothing
while idle.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from motia.exceptions import StateBackendUnavailable, StateConflictError
from motia.state.backends.redis.client import logger
from motia.state.backends.redis.keys import (
    meta_key,
    stream_groups_key,
    stream_items_key,
    stream_log_key,
    stream_names_key,
)
from motia.state.backends.types import Record, StreamChange, StreamTriggerSubscription

if TYPE_CHECKING:
    from motia.state.backends.redis.client import RedisClient

#: The log keeps at least this many changes, and every change younger than LOG_AGE seconds (server time).
LOG_KEEP = 10_000
LOG_AGE = 60.0


def _item(item: str, raw: bytes) -> Record:
    version, data = raw.split(b"|", 1)
    return Record(item, data, int(version), None)


def _change(entry: list[Any]) -> StreamChange:
    """A change as ``streams.lua`` records it in a history or the log (an ``XRANGE``/``XREAD`` entry)."""
    flat = entry[1]
    fields = {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}
    item = fields.get(b"i")
    return StreamChange(
        int(fields[b"p"]),
        fields[b"s"].decode(),
        fields[b"g"].decode(),
        None if item is None else item.decode(),
        int(fields[b"q"]),
        fields[b"k"].decode(),
        fields.get(b"o"),
        fields.get(b"n"),
        float(fields[b"t"]),
    )


class RedisStreams:
    """The stream contract on Redis; the host class supplies the client and its bound calls."""

    prefix: str
    _clock: Callable[[], float]
    _client: RedisClient
    _call: Callable[..., Awaitable[Any]]
    _write: Callable[..., Awaitable[Any]]
    _command: Callable[..., Awaitable[Any]]
    _token: Callable[[], str]

    if TYPE_CHECKING:  # provided by the host class

        def _notify_stream_listeners(self) -> None: ...
        def _notify_listeners(self) -> None: ...

    async def stream_get(self, stream: str, group: str, item: str) -> Record | None:
        raw = await self._command("HGET", stream_items_key(self.prefix, stream, group), item)
        return None if raw is None else _item(item, raw)

    async def stream_snapshot(self, stream: str, group: str, item: str | None) -> tuple[int, list[Record]]:
        reply = await self._call(
            "motia1_stream_snapshot", stream, group, "" if item is None else item, "0" if item is None else "1"
        )
        records = [_item(reply[i].decode(), reply[i + 1]) for i in range(1, len(reply), 2)]
        records.sort(key=lambda record: record.key)  # code point order, as state keys
        return int(reply[0]), records

    async def stream_groups(self, stream: str) -> list[str]:
        # score 0 for all: ZRANGE orders by bytes, which for UTF-8 is code point order
        return [
            group.decode() for group in await self._command("ZRANGE", stream_groups_key(self.prefix, stream), 0, -1)
        ]

    async def stream_names(self) -> list[str]:
        return [name.decode() for name in await self._command("ZRANGE", stream_names_key(self.prefix), 0, -1)]

    def _record_args(self, stream: str, group: str, item: str | None, history: int) -> tuple[Any, ...]:
        """The arguments every change ends with: see ``record`` in ``streams.lua``. The JSON pieces of a
        delivery's payload and order key are encoded here, exactly as ``_events.stream_deliveries`` does."""
        ident = orjson.dumps({"stream_name": stream, "group_id": group, "item_id": item})[1:-1]
        order_key = orjson.dumps(["stream", stream, group])
        now = float(self._clock())
        return history, repr(now), ident, order_key, LOG_KEEP, repr(float(LOG_AGE)), orjson.dumps(now)

    def _recorded(self, reply: list[Any], stream: str, group: str, item: str | None, new: bytes | None) -> StreamChange:
        change = StreamChange(
            int(reply[1]), stream, group, item, int(reply[2]), reply[3].decode(), reply[4], new, float(reply[5])
        )
        try:
            self._notify_stream_listeners()
            if int(reply[6]):
                self._notify_listeners()  # stream-trigger deliveries are ready for this process's workers
        except Exception:  # the change is committed: its writer must hear so, whatever a listener does
            logger.exception("a stream listener of the state store %s failed", self._client.url)
        return change

    async def stream_write(
        self, stream: str, group: str, item: str, data: bytes | None, *, if_version: int | None, history: int
    ) -> StreamChange | None:
        reply = await self._write(
            "motia1_stream_write",
            self._token(),
            stream,
            group,
            item,
            "d" if data is None else "s",
            b"" if data is None else data,
            "" if if_version is None else if_version,
            *self._record_args(stream, group, item, history),
        )
        if reply[0] == 0:
            actual = int(reply[1])
            raise StateConflictError(
                f"stream {stream!r} item {group!r}/{item!r} is at version {actual}, not {if_version}; "
                "nothing was written",
                expected=if_version or 0,
                actual=actual,
            )
        if reply[0] == 2:
            return None  # deleting an absent item records nothing
        return self._recorded(reply, stream, group, item, data)

    async def stream_send(
        self, stream: str, group: str, item: str | None, event: bytes, *, history: int
    ) -> StreamChange:
        reply = await self._write(
            "motia1_stream_send",
            self._token(),
            stream,
            group,
            "" if item is None else item,
            "0" if item is None else "1",
            event,
            *self._record_args(stream, group, item, history),
        )
        return self._recorded(reply, stream, group, item, event)

    async def stream_history(self, stream: str, group: str, *, after: int, limit: int) -> list[StreamChange] | None:
        reply = await self._call("motia1_stream_history", stream, group, after, limit)
        if reply[0] == 0:
            return None
        return [_change(entry) for entry in reply[1][: max(limit, 0)]]

    async def stream_position(self) -> int:
        position = await self._command("HGET", meta_key(self.prefix), "spos")
        return 0 if position is None else int(position)

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[StreamChange]:
        if limit < 1:
            return []
        log = stream_log_key(self.prefix)
        start = max(after, 0)
        found = await self._command("XRANGE", log, f"{start + 1}-0", "+", "COUNT", limit)
        if found or wait <= 0:
            return [_change(entry) for entry in found]
        # Race-free: XREAD answers at once with any change after `start` committed since the XRANGE.
        try:
            reply = await self._client.blocking(
                "XREAD",
                "COUNT",
                limit,
                "BLOCK",
                max(1, math.ceil(wait * 1000)),
                "STREAMS",
                log,
                f"{start}-0",
                block=wait,
            )
        except StateBackendUnavailable as exc:
            # The connection broke under the wait (a server restart, a failover): the wait ends early and the
            # log is read once more through the calls that retry until the server is back or the timeout.
            logger.warning("waiting for stream changes: %s; reading the log again", exc)
            found = await self._command("XRANGE", log, f"{start + 1}-0", "+", "COUNT", limit)
            return [_change(entry) for entry in found]
        if not reply:
            return []
        return [_change(entry) for entry in reply[0][1]]

    async def add_stream_subscriptions(self, subscriptions: Sequence[StreamTriggerSubscription]) -> None:
        if not subscriptions:
            return
        args: list[Any] = []
        for subscription in subscriptions:
            args += (subscription.stream, orjson.dumps([subscription.step, subscription.group, subscription.item]))
        await self._call("motia1_add_stream_triggers", *args)
