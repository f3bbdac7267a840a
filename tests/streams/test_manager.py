"""StreamManager: the server API of SPEC 10.2 on every backend with streams."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from motia import StateConflictError, StateValueError, StreamNotFoundError
from motia.exceptions import ConfigError, InvalidUpdateError
from motia.state.manager import StateManager
from motia.streams import StreamDefinition, StreamManager, StreamSetResult


class Todo(BaseModel):
    title: str
    done: bool = False


TODO = StreamDefinition("todo", schema=Todo, source="steps/todo_stream.py")
NOTES = StreamDefinition(
    "notes",
    schema={
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": False,
    },
)
FREE = StreamDefinition("free", history=3)


@pytest.fixture
def streams(stream_state: StateManager) -> StreamManager:
    return StreamManager(stream_state.backend, [TODO, NOTES, FREE])


async def test_set_stores_the_item_with_its_id_and_returns_old_and_new(streams):
    first = await streams.set("todo", "inbox", "t1", {"title": "milk"})
    assert isinstance(first, StreamSetResult)
    assert first.old_value is None
    assert first.new_value == {"title": "milk", "id": "t1"}
    assert first["id"] == "t1" and first["title"] == "milk"  # Motia's set returned the item
    second = await streams.set("todo", "inbox", "t1", Todo(title="eggs", done=True))
    assert second.old_value == {"title": "milk", "id": "t1"}
    assert await streams.get("todo", "inbox", "t1") == {"title": "eggs", "done": True, "id": "t1"}


async def test_an_id_in_the_data_is_replaced_by_the_item_id(streams):
    await streams.set("free", "g", "right", {"id": "wrong", "x": 1})
    assert await streams.get("free", "g", "right") == {"id": "right", "x": 1}


@pytest.mark.parametrize(
    ("stream", "data", "message"),
    [
        ("todo", {"title": 3}, "title"),
        ("todo", {}, "title"),
        ("notes", {"text": "a", "extra": 1}, "extra"),
        ("notes", {"text": 1}, "text"),
        ("free", [1, 2], "must be a JSON object"),
        ("free", "text", "must be a JSON object"),
        ("free", {"x": float("nan")}, "value.x: nan is not valid JSON"),
        ("free", {"x": object()}, "object"),
    ],
)
async def test_invalid_items_raise_and_write_nothing(streams, stream, data, message):
    with pytest.raises(StateValueError) as caught:
        await streams.set(stream, "g", "i", data)
    assert message in str(caught.value)
    assert await streams.get(stream, "g", "i") is None
    assert await streams.history(stream, "g", 0) == []  # no change recorded


async def test_the_id_is_not_validated_unless_the_schema_declares_it(streams):
    await streams.set("notes", "g", "n1", {"text": "hi"})  # additionalProperties false, yet "id" is stored
    assert await streams.get("notes", "g", "n1") == {"text": "hi", "id": "n1"}


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda s: s.set("nope", "g", "i", {}), StreamNotFoundError),
        (lambda s: s.get("todo", "", "i"), StateValueError),
        (lambda s: s.get("todo", "g", 5), StateValueError),
        (lambda s: s.set("todo", "g" * 2000, "i", {"title": "x"}), StateValueError),
        (lambda s: s.update("todo", "g", "i", [{"type": "explode"}]), InvalidUpdateError),
        (lambda s: s.send("todo", {"id": "x"}, {"type": "t"}), StateValueError),
        (lambda s: s.send("todo", {"groupId": "g"}, {"data": 1}), StateValueError),
        (lambda s: s.send("todo", "g", {"type": "t"}), StateValueError),
        (lambda s: s.list_groups("nope"), StreamNotFoundError),
    ],
)
async def test_bad_calls_raise_clear_errors_and_change_nothing(streams, call, error):
    with pytest.raises(error):
        await call(streams)
    assert await streams.backend.stream_position() == 0


async def test_unknown_stream_error_lists_the_declared_ones(streams):
    with pytest.raises(StreamNotFoundError, match=r"declared: free, notes, todo"):
        await streams.get("nope", "g", "i")


async def test_update_applies_operations_and_validates_the_result(streams):
    await streams.set("todo", "inbox", "t1", {"title": "milk"})
    result = await streams.update("todo", "inbox", "t1", [{"type": "set", "path": "done", "value": True}])
    assert result.old_value == {"title": "milk", "id": "t1"}
    assert result.new_value == {"title": "milk", "id": "t1", "done": True}
    with pytest.raises(StateValueError):
        await streams.update("todo", "inbox", "t1", [{"type": "set", "path": "title", "value": 5}])
    assert await streams.get("todo", "inbox", "t1") == {"title": "milk", "id": "t1", "done": True}


async def test_update_of_a_missing_item_starts_from_an_empty_object(streams):
    result = await streams.update("free", "g", "c", [{"type": "increment", "path": "n", "value": 2}])
    assert result.old_value is None and result.new_value == {"n": 2, "id": "c"}


async def test_empty_update_writes_nothing(streams):
    await streams.set("free", "g", "c", {"n": 1})
    before = await streams.backend.stream_position()
    result = await streams.update("free", "g", "c", [])
    assert result.old_value == result.new_value == {"n": 1, "id": "c"}
    assert await streams.backend.stream_position() == before


async def test_concurrent_updates_lose_nothing(streams):
    await asyncio.gather(
        *(streams.update("free", "g", "counter", [{"type": "increment", "path": "n", "value": 1}]) for _ in range(50))
    )
    assert (await streams.get("free", "g", "counter"))["n"] == 50
    changes = await streams.history("free", "g", 47)  # history 3: the last three
    assert [change.seq for change in changes] == [48, 49, 50]


async def test_delete_returns_the_old_item_or_none(streams):
    await streams.set("free", "g", "a", {"v": 1})
    assert await streams.delete("free", "g", "a") == {"v": 1, "id": "a"}
    assert await streams.delete("free", "g", "a") is None
    assert [change.kind for change in await streams.history("free", "g", 0)] == ["create", "delete"]


async def test_get_group_in_id_order_and_list_groups_sorted(streams):
    for group, item in [("b", "z"), ("b", "a"), ("a", "m"), ("c", "x")]:
        await streams.set("free", group, item, {})
    await streams.delete("free", "c", "x")
    assert [item["id"] for item in await streams.get_group("free", "b")] == ["a", "z"]
    assert await streams.list("free", "b") == await streams.get_group("free", "b")
    assert await streams.list_groups("free") == ["a", "b"]
    assert await streams.get_group("free", "empty") == []


async def test_send_records_an_event_and_stores_no_item(streams):
    await streams.send("free", {"groupId": "room"}, {"type": "typing", "data": {"who": "ann"}})
    await streams.send("free", {"group_id": "room", "id": "m1"}, {"type": "read"})
    changes = await streams.history("free", "room", 0)
    assert [(c.kind, c.item, c.seq) for c in changes] == [("event", None, 1), ("event", "m1", 2)]
    assert await streams.get_group("free", "room") == []
    assert await streams.list_groups("free") == []


async def test_snapshot_carries_the_seq_it_reflects(streams):
    await streams.set("free", "g", "a", {"v": 1})
    await streams.set("free", "g", "b", {"v": 2})
    seq, items = await streams.snapshot("free", "g", None)
    assert seq == 2 and items == [b'{"v":1,"id":"a"}', b'{"v":2,"id":"b"}']
    assert await streams.snapshot("free", "g", "b") == (2, [b'{"v":2,"id":"b"}'])
    assert await streams.snapshot("free", "g", "zz") == (2, [])


async def test_streams_and_state_never_see_each_other(streams, stream_state):
    await streams.set("free", "orders", "o1", {"v": 1})
    await stream_state.set("orders", "o2", {"v": 2})
    assert await stream_state.list_groups() == ["orders"]
    assert await stream_state.get("orders", "o1") is None
    assert await streams.list_groups("free") == ["orders"]
    assert await streams.get("free", "orders", "o2") is None


def test_declaring_one_name_twice_names_both_files(stream_state):
    manager = StreamManager(stream_state.backend, [TODO])
    manager.declare(TODO)  # the same declaration again is harmless
    with pytest.raises(ConfigError, match=r"steps/todo_stream.py.*steps/other_stream.py"):
        manager.declare(StreamDefinition("todo", source="steps/other_stream.py"))


async def test_history_bound_and_reset(streams):
    for n in range(6):
        await streams.set("free", "g", "a", {"n": n})
    assert await streams.history("free", "g", 6) == []
    assert [c.seq for c in await streams.history("free", "g", 3)] == [4, 5, 6]
    # seq 3 is past the history: gone (the caller must re-sync) or, where the store still keeps it for its
    # tail (SQLite keeps the last minute), given whole, never with a gap
    older = await streams.history("free", "g", 2)
    assert older is None or [c.seq for c in older] == [3, 4, 5, 6]
    if streams.backend.url == "memory://":
        assert older is None
    assert await streams.history("free", "g", 7) is None  # from the future


async def test_a_conflicting_writer_makes_update_retry_not_fail(streams, monkeypatch):
    backend = streams.backend
    original = backend.stream_write
    calls = {"n": 0}

    async def interfering(stream, group, item, data, *, if_version, history):
        calls["n"] += 1
        if calls["n"] == 1:  # another writer commits between our read and our write
            await original(stream, group, item, b'{"n":100,"id":"c"}', if_version=None, history=history)
        return await original(stream, group, item, data, if_version=if_version, history=history)

    monkeypatch.setattr(backend, "stream_write", interfering)
    result = await streams.update("free", "g", "c", [{"type": "increment", "path": "n", "value": 1}])
    assert result.new_value == {"n": 101, "id": "c"}


async def test_stale_if_version_raises_conflict_in_the_backend(stream_backend):
    await stream_backend.stream_write("s", "g", "i", b"{}", if_version=0, history=10)
    with pytest.raises(StateConflictError):
        await stream_backend.stream_write("s", "g", "i", b"{}", if_version=0, history=10)
