"""``StreamManager``: the async server API of streams (SPEC 10.2) over the app's state backend.

Like :class:`~motia.state.manager.StateManager`, it checks and encodes everything before the backend is
touched, so bad input (an unknown stream, a bad id, a value that is not a JSON object or fails the stream's
schema) raises and changes nothing on every backend alike. Items are stored with ``"id": item_id``
(Motia's clients find items by ``id``).

``update`` applies its operations here, not in the backend, because the result must pass the stream's
schema before it is written: it reads the item, applies, validates and writes with the version it read,
and starts again when another writer got there first, so no update is lost.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Iterable, Mapping
from typing import Any

from motia.exceptions import ConfigError, StateConflictError, StateValueError, StreamNotFoundError
from motia.state import values as _values
from motia.state.backends.base import StateBackend
from motia.state.backends.types import StreamChange
from motia.state.observe import backend_kind, observed
from motia.state.ops import apply_operations, parse_operations
from motia.state.schema import schema_errors
from motia.state.types import JSON, StateSetResult
from motia.streams.config import StreamDefinition

__all__ = ["StreamManager", "StreamSetResult"]

#: An update retries this many times when other writers keep changing the item under it.
MAX_UPDATE_ATTEMPTS = 200


class StreamSetResult(StateSetResult):
    """The outcome of a stream ``set``/``update``: ``old_value`` (``None`` for a new item) and ``new_value``.

    Indexing with an item field (``result["id"]``) reads ``new_value``, for code written against Motia,
    whose ``set`` returns the stored item.
    """

    __slots__ = ()

    def __getitem__(self, name: str) -> JSON:
        if name in ("old_value", "new_value", "version"):
            return getattr(self, name)
        new = self.new_value
        if isinstance(new, dict):
            return new[name]
        raise KeyError(name)

    def get(self, name: str, default: JSON = None) -> JSON:
        try:
            return self[name]
        except KeyError:
            return default

    def __repr__(self) -> str:
        return f"StreamSetResult(old_value={self.old_value!r}, new_value={self.new_value!r})"


def _result(old: bytes | None, new: bytes | None, version: int) -> StreamSetResult:
    return StreamSetResult(version=version, _encoded=(old, new, _values.decode))


def _check_id(kind: str, value: object) -> str:
    return _values.check_name(kind, value, _values.MAX_KEY_LENGTH)


def _item_op(
    manager: StreamManager, stream: object, group_id: object = "", item_id: object = None, *_: object, **__: object
) -> tuple[str, tuple[str, str], str | None]:
    """What an observer is told of a stream operation: the backend's kind, stream and group, item id."""
    return backend_kind(manager.backend), (str(stream), str(group_id)), item_id if isinstance(item_id, str) else None


def _sent(
    manager: StreamManager, stream: object, channel: object = None, *_: object, **__: object
) -> tuple[str, tuple[str, str], str | None]:
    group = channel.get("group_id", channel.get("groupId")) if isinstance(channel, Mapping) else None
    item = channel.get("id", channel.get("item_id")) if isinstance(channel, Mapping) else None
    return backend_kind(manager.backend), (str(stream), str(group)), item if isinstance(item, str) else None


class StreamManager:
    """Every declared stream of one app, on one state backend. Safe to call from many tasks at once."""

    def __init__(
        self,
        backend: StateBackend,
        definitions: Iterable[StreamDefinition] = (),
        *,
        max_value_bytes: int = _values.DEFAULT_MAX_VALUE_BYTES,
    ) -> None:
        self.backend = backend
        self.max_value_bytes = max_value_bytes
        self._definitions: dict[str, StreamDefinition] = {}
        for definition in definitions:
            self.declare(definition)

    # -- declarations -------------------------------------------------------------------------------------

    def declare(self, definition: StreamDefinition) -> None:
        """Add a stream; the same definition again is harmless, another one of that name a
        :class:`ConfigError` naming both files."""
        existing = self._definitions.get(definition.name)
        if existing is not None and existing != definition:
            raise ConfigError(
                f"stream {definition.name!r} is declared twice: in {existing.source or '<code>'} and in "
                f"{definition.source or '<code>'}"
            )
        self._definitions[definition.name] = definition

    def definition(self, stream: str) -> StreamDefinition:
        """The declaration of ``stream``; :class:`StreamNotFoundError` (listing the declared ones) if none."""
        found = self._definitions.get(stream) if isinstance(stream, str) else None
        if found is None:
            declared = ", ".join(sorted(self._definitions)) or "none"
            raise StreamNotFoundError(f"no stream named {stream!r} is declared (declared: {declared})")
        return found

    @property
    def definitions(self) -> Mapping[str, StreamDefinition]:
        return dict(self._definitions)

    def __contains__(self, stream: object) -> bool:
        return stream in self._definitions

    # -- checks -------------------------------------------------------------------------------------------

    def _item(self, definition: StreamDefinition, group_id: str, item_id: str, value: JSON) -> bytes:
        """The stored form of an item: a JSON object with ``"id"``, valid against the schema, encoded."""
        if not isinstance(value, dict):
            raise StateValueError(
                f"a stream item must be a JSON object (a dict or a pydantic model), not {type(value).__name__}"
            )
        item = {**value, "id": item_id}
        if definition.schema is not None:
            checked = item if definition.declares_id() else {k: v for k, v in value.items() if k != "id"}
            errors = schema_errors(definition.schema, checked)
            if errors:
                problems = "; ".join(f"{error['path'] or '(item)'}: {error['message']}" for error in errors[:10])
                raise StateValueError(
                    f"stream {definition.name!r} item {group_id!r}/{item_id!r} does not match the stream's "
                    f"schema: {problems}"
                )
        return _values.encode(item, self.max_value_bytes)

    # -- the server API -----------------------------------------------------------------------------------

    @observed("stream", "get", _item_op)
    async def get(self, stream: str, group_id: str, item_id: str) -> JSON:
        """The item, or ``None``."""
        definition = self.definition(stream)
        record = await self.backend.stream_get(
            definition.name, _check_id("group_id", group_id), _check_id("item_id", item_id)
        )
        return None if record is None else _values.decode(record.data)

    @observed("stream", "set", _item_op)
    async def set(self, stream: str, group_id: str, item_id: str, data: Any) -> StreamSetResult:
        """Store ``data`` as the item (with ``"id": item_id``), replacing any old one."""
        definition = self.definition(stream)
        group_id, item_id = _check_id("group_id", group_id), _check_id("item_id", item_id)
        encoded = self._item(definition, group_id, item_id, _values.to_json(data))
        change = await self.backend.stream_write(
            definition.name, group_id, item_id, encoded, if_version=None, history=definition.history
        )
        assert change is not None
        return _result(change.old_data, change.new_data, 0)

    @observed("stream", "update", _item_op)
    async def update(
        self, stream: str, group_id: str, item_id: str, ops: builtins.list[dict[str, Any]]
    ) -> StreamSetResult:
        """Apply update operations (SPEC 1.2) atomically; a missing item starts as ``{}``. The result
        must still be a valid item. An empty ``ops`` writes nothing."""
        definition = self.definition(stream)
        group_id, item_id = _check_id("group_id", group_id), _check_id("item_id", item_id)
        operations = parse_operations(ops)
        for attempt in range(MAX_UPDATE_ATTEMPTS):
            record = await self.backend.stream_get(definition.name, group_id, item_id)
            current: JSON = {} if record is None else _values.decode(record.data)
            if not operations:
                data = None if record is None else record.data
                return _result(data, data, 0)
            updated = apply_operations(current, operations)
            encoded = self._item(definition, group_id, item_id, updated)
            try:
                change = await self.backend.stream_write(
                    definition.name,
                    group_id,
                    item_id,
                    encoded,
                    if_version=0 if record is None else record.version,
                    history=definition.history,
                )
            except StateConflictError:
                await asyncio.sleep(0 if attempt < 3 else min(0.001 * attempt, 0.02))
                continue
            assert change is not None
            return _result(change.old_data, change.new_data, 0)
        raise StateConflictError(
            f"stream {definition.name!r} item {group_id!r}/{item_id!r} kept changing under update "
            f"({MAX_UPDATE_ATTEMPTS} attempts); nothing was written",
            expected=0,
            actual=0,
        )

    @observed("stream", "delete", _item_op)
    async def delete(self, stream: str, group_id: str, item_id: str) -> JSON:
        """Remove the item; return it, or ``None`` (changing nothing) when absent."""
        definition = self.definition(stream)
        group_id, item_id = _check_id("group_id", group_id), _check_id("item_id", item_id)
        change = await self.backend.stream_write(
            definition.name, group_id, item_id, None, if_version=None, history=definition.history
        )
        return None if change is None or change.old_data is None else _values.decode(change.old_data)

    @observed("stream", "get_group", _item_op)
    async def get_group(self, stream: str, group_id: str) -> builtins.list[JSON]:
        """The group's items, in id order."""
        definition = self.definition(stream)
        _, records = await self.backend.stream_snapshot(definition.name, _check_id("group_id", group_id), None)
        return [_values.decode(record.data) for record in records]

    #: motia-py 1.0's name for :meth:`get_group`.
    list = get_group

    @observed("stream", "list_groups", _item_op)
    async def list_groups(self, stream: str) -> builtins.list[str]:
        """Sorted ids of the groups that hold an item."""
        return await self.backend.stream_groups(self.definition(stream).name)

    @observed("stream", "send", _sent)
    async def send(self, stream: str, channel: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        """An ephemeral event to the subscribers of ``channel`` (``{"group_id" or "groupId", "id"?}``):
        ``event = {"type": ..., "data": ...}``. Not stored as an item; stream triggers see it."""
        definition = self.definition(stream)
        if not isinstance(channel, Mapping):
            raise StateValueError(f"channel must be a dict with a group_id, not {type(channel).__name__}")
        group_id = channel.get("group_id", channel.get("groupId"))
        group_id = _check_id("channel group_id", group_id)
        item_id = channel.get("id", channel.get("item_id"))
        if item_id is not None:
            item_id = _check_id("channel id", item_id)
        if not isinstance(event, Mapping):
            raise StateValueError(f"event must be a dict with a type, not {type(event).__name__}")
        event_type = event.get("type")
        if not isinstance(event_type, str) or not event_type:
            raise StateValueError(f"event type must be a non-empty str, not {event_type!r}")
        encoded = _values.encode({"type": event_type, "data": _values.to_json(event.get("data"))}, self.max_value_bytes)
        await self.backend.stream_send(definition.name, group_id, item_id, encoded, history=definition.history)

    # -- for the stream server ----------------------------------------------------------------------------

    async def snapshot(self, stream: str, group_id: str, item_id: str | None) -> tuple[int, builtins.list[bytes]]:
        """The group's current ``seq`` and its encoded items (or ``item_id``'s alone: ``[]`` if absent),
        read atomically: a client synced from it resumes from that ``seq`` missing nothing."""
        definition = self.definition(stream)
        group_id = _check_id("group_id", group_id)
        if item_id is not None:
            item_id = _check_id("item_id", item_id)
        seq, records = await self.backend.stream_snapshot(definition.name, group_id, item_id)
        return seq, [record.data for record in records]

    async def history(
        self, stream: str, group_id: str, after: int, *, limit: int = 10_000
    ) -> builtins.list[StreamChange] | None:
        """The group's changes after ``seq`` ``after``; ``None`` when the history no longer reaches back."""
        definition = self.definition(stream)
        return await self.backend.stream_history(
            definition.name, _check_id("group_id", group_id), after=after, limit=limit
        )
