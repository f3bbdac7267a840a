"""The console's Streams view: the streams, their groups and items, and their changes as they commit.

Two parts:

- :class:`StreamsAPI`, the JSON endpoints under ``/__motia/api/streams``. A stream is listed when it is
  declared (the app's :class:`~motia.streams.manager.StreamManager`) or holds items in the store (a
  stream whose declaration was removed, or that another app on the same store declares), so nothing
  stored is hidden. Streams, groups and items travel as query parameters, as scopes and keys do.
- :class:`StreamFeed`, which tails the store's stream log (``backend.stream_tail``) and publishes each
  change to the console's event hub (``app.state_events``), whose Server-Sent Events endpoint sends it
  as ``event: stream``. Changes made by any process or instance on the store are in the log, so the page
  sees them all. The tail runs while at least one page's feed is open: a console nobody watches costs
  nothing. It survives store errors (logged, retried with back-off) and stops only when the store is
  closed or cannot hold streams.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from motia.console._api import ApiError, query_int, required
from motia.exceptions import StateClosedError
from motia.runtime.http import JSONResponse
from motia.runtime.tasks import cancel_and_wait
from motia.state import values as _values
from motia.state.backends.types import Record, StreamChange

if TYPE_CHECKING:
    from motia.runtime.events import StateEventHub
    from motia.state.backends.base import StateBackend
    from motia.streams.config import StreamDefinition
    from motia.streams.manager import StreamManager

__all__ = ["StreamFeed", "StreamsAPI", "change_event"]

logger = logging.getLogger("motia.console")

#: Changes read per tail call, and the longest one call waits for a commit (seconds).
TAIL_BATCH, TAIL_WAIT = 500, 5.0
#: Back-off after a failed tail read: from the first delay, doubling, up to the last (seconds).
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
#: How long opening a feed waits for the tail's starting position before answering anyway (seconds).
START_TIMEOUT = 5.0
#: Items or events up to this size (encoded) travel in the feed; a bigger one is named with its size and
#: the page reads it from the API (every open page keeps the last events, so they stay small).
FEED_VALUE_LIMIT = 16 * 1024
#: Items per group answer when the client does not say, and the most it may ask for.
DEFAULT_ITEMS, MAX_ITEMS = 200, 1000


def _decoded(data: bytes) -> Any:
    try:
        return _values.decode(data)
    except ValueError as exc:  # never written by the manager; shown rather than fatal to the feed
        logger.warning("console stream feed: a stored value is not JSON (%s)", exc)
        return None


def change_event(change: StreamChange) -> dict[str, Any]:
    """A committed change as the feed carries it: where (``stream``, ``group_id``, ``item_id``), what
    (``event_type``: create, update, delete or event), its ``seq`` and ``position``, and ``data``: the new
    item, the deleted one, or the event ``{"type", "data"}`` sent (``None`` with ``data_omitted`` = its
    size in bytes when it is over :data:`FEED_VALUE_LIMIT`)."""
    data = change.old_data if change.kind == "delete" else change.new_data
    event: dict[str, Any] = {
        "kind": "stream",
        "stream": change.stream,
        "group_id": change.group,
        "item_id": change.item,
        "event_type": change.kind,
        "seq": change.seq,
        "position": change.position,
        "timestamp": change.timestamp,
        "data": None,
    }
    if data is not None:
        if len(data) > FEED_VALUE_LIMIT:
            event["data_omitted"] = len(data)
        else:
            event["data"] = _decoded(data)
    return event


class StreamFeed:
    """Publishes every committed stream change to ``hub`` while at least one console feed watches.

    :meth:`watch` and :meth:`unwatch` count the open feeds (the event endpoint calls them); the first
    starts one tail task, the last stops it. A change committed after :meth:`watch` returned is published.
    """

    def __init__(
        self,
        backend: StateBackend,
        hub: StateEventHub,
        *,
        batch: int = TAIL_BATCH,
        wait: float = TAIL_WAIT,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
    ) -> None:
        self.backend = backend
        self.hub = hub
        self.batch = batch
        self.wait = wait
        self.backoff = backoff
        self._watchers = 0
        self._task: asyncio.Task[None] | None = None
        self._started: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        """Whether a tail task is running (it stops when the last feed closes or the store does)."""
        return self._task is not None and not self._task.done()

    async def watch(self) -> None:
        """One more feed is open: start the tail unless it runs, and return once it knows where the log
        ends (or after :data:`START_TIMEOUT` when the store is slow to say; it keeps trying)."""
        self._watchers += 1
        try:
            if not self.running:
                self._started = asyncio.Event()
                self._task = asyncio.create_task(self._run(self._started), name="motia-console-stream-feed")
            assert self._started is not None
            try:
                await asyncio.wait_for(self._started.wait(), START_TIMEOUT)
            except TimeoutError:
                logger.warning(
                    "console stream feed: the store did not give its stream position within %.0f s", START_TIMEOUT
                )
        except BaseException:
            self.unwatch()
            raise

    def unwatch(self) -> None:
        """A feed closed; the last one stops the tail (cancelled, without waiting: callers may be in a
        cancelled scope where nothing can be awaited)."""
        self._watchers = max(0, self._watchers - 1)
        if self._watchers == 0:
            task, self._task = self._task, None
            if task is not None:
                task.cancel()

    async def aclose(self) -> None:
        """Stop the tail now, whoever watches, and wait until it has."""
        self._watchers = 0
        task, self._task = self._task, None
        await cancel_and_wait(task, "the console's stream feed")

    async def _run(self, started: asyncio.Event) -> None:
        delay = self.backoff[0]
        after: int | None = None
        failed = False
        try:
            while True:
                try:
                    if after is None:
                        after = await self.backend.stream_position()
                        started.set()
                    elif failed:
                        after = await self._resume_from(after)
                        failed = False
                    changes = await self.backend.stream_tail(after, limit=self.batch, wait=self.wait)
                except StateClosedError:
                    logger.info("console stream feed: the state store is closed; live stream changes stop")
                    return
                except NotImplementedError:
                    logger.warning(
                        "console stream feed: the state store %s does not support streams; live stream changes "
                        "are not shown",
                        type(self.backend).__name__,
                    )
                    return
                except Exception:
                    failed = True
                    logger.exception("console stream feed: reading the stream log failed; retrying in %.1f s", delay)
                    started.set()  # answer the page: the feed is open, changes follow once the store recovers
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
                for change in changes:
                    self.hub.publish(change_event(change))
                    after = change.position
        finally:
            started.set()

    async def _resume_from(self, after: int) -> int:
        """Where to go on after a failure: ``after``, unless the store's log now ends before it (a Redis
        server restarted without its data, a store replaced). Then every change in the log is newer than
        those seen, so from its start; otherwise the tail would wait for positions the log will not reach
        for a long time."""
        newest = await self.backend.stream_position()
        if newest < after:
            logger.warning(
                "console stream feed: the store's stream log went back from position %d to %d (its data was "
                "lost or replaced); following it from its start",
                after,
                newest,
            )
            return 0
        return after


def _schema_name(schema: Any) -> str | None:
    if schema is None:
        return None
    if isinstance(schema, dict):
        title = schema.get("title")
        return title if isinstance(title, str) and title else "JSON Schema"
    return getattr(schema, "__name__", type(schema).__name__)


def _definition_json(definition: StreamDefinition | None) -> dict[str, Any]:
    if definition is None:
        return {"declared": False, "description": None, "source": None, "schema": None, "history": None}
    return {
        "declared": True,
        "description": definition.description,
        "source": definition.source,
        "schema": _schema_name(definition.schema),
        "history": definition.history,
    }


def _item_json(record: Record) -> dict[str, Any]:
    return {"id": record.key, "version": record.version, "value": _decoded(record.data)}


def _check_id(kind: str, value: str) -> str:
    return _values.check_name(kind, value, _values.MAX_KEY_LENGTH)


class StreamsAPI:
    """The Streams view's endpoints, over one app's :class:`StreamManager` (and so its store)."""

    def __init__(self, manager: StreamManager) -> None:
        self.manager = manager

    @property
    def backend(self) -> StateBackend:
        return self.manager.backend

    async def _definition(self, stream: str) -> StreamDefinition | None:
        """The declaration of ``stream``, ``None`` when it is only stored; a 404 when neither."""
        if stream in self.manager:
            return self.manager.definition(stream)
        if stream in await self.backend.stream_names():
            return None
        declared = ", ".join(sorted(self.manager.definitions)) or "none"
        raise ApiError(404, f"no stream named {stream!r}: it is not declared and holds no items (declared: {declared})")

    async def streams(self, request: Request) -> Response:
        definitions = self.manager.definitions
        names = sorted(set(definitions) | set(await self.backend.stream_names()))
        groups = await asyncio.gather(*(self.backend.stream_groups(name) for name in names))
        return JSONResponse(
            {
                "streams": [
                    {"name": name, "groups": len(found), **_definition_json(definitions.get(name))}
                    for name, found in zip(names, groups, strict=True)
                ]
            }
        )

    async def groups(self, request: Request) -> Response:
        stream = required(request, "stream")
        definition = await self._definition(stream)
        groups = await self.backend.stream_groups(stream)
        return JSONResponse({"stream": stream, **_definition_json(definition), "groups": groups})

    async def items(self, request: Request) -> Response:
        """A group's items in id order with its ``seq``, read in one atomic step (the first ``limit``)."""
        stream = required(request, "stream")
        group = _check_id("group", required(request, "group"))
        limit = query_int(request, "limit", low=1, high=MAX_ITEMS) or DEFAULT_ITEMS
        await self._definition(stream)
        seq, records = await self.backend.stream_snapshot(stream, group, None)
        return JSONResponse(
            {
                "stream": stream,
                "group": group,
                "seq": seq,
                "count": len(records),
                "items": [_item_json(record) for record in records[:limit]],
                "truncated": len(records) > limit,
            }
        )

    async def item(self, request: Request) -> Response:
        stream = required(request, "stream")
        group = _check_id("group", required(request, "group"))
        item_id = _check_id("id", required(request, "id"))
        await self._definition(stream)
        record = await self.backend.stream_get(stream, group, item_id)
        if record is None:
            raise ApiError(404, f"no item {item_id!r} in group {group!r} of stream {stream!r}")
        return JSONResponse({"stream": stream, "group": group, **_item_json(record)})
