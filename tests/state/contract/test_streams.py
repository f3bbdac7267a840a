"""The stream contract (``StreamStore`` in ``state/backends/base.py``), items and their numbering, run over every
backend: change kinds, per-group ``seq`` and store-wide ``position``, versions and ``if_version``, snapshots, groups
and names, the namespace apart from state, a closed store. The change log (history, tail) is in
``test_stream_log.py``; stream triggers in ``test_stream_triggers.py``; SQLite specifics in
``backends/test_sqlite_streams.py``."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from motia.exceptions import StateClosedError, StateConflictError
from motia.state.backends.base import Record, StreamChange, StreamTriggerSubscription
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

H = 100  # the history every write here asks for (the log tests vary it)


async def write(state: StateManager, group: str, item: str, data: bytes | None, **options: Any) -> StreamChange | None:
    options.setdefault("if_version", None)
    options.setdefault("history", H)
    return await state.backend.stream_write("s", group, item, data, **options)


async def test_create_update_delete_record_their_kind_seq_and_values(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # When an item is created, updated (with the same data: still an update) and deleted
    created = await write(state, "g", "i", b'{"n":1}')
    updated = await write(state, "g", "i", b'{"n":2}')
    same = await write(state, "g", "i", b'{"n":2}')
    deleted = await write(state, "g", "i", None)
    assert created and updated and same and deleted
    # Then each change says what happened, numbered 1, 2, 3, 4 in its group, with the values before and after
    assert created == StreamChange(created.position, "s", "g", "i", 1, "create", None, b'{"n":1}', clock())
    assert updated == StreamChange(updated.position, "s", "g", "i", 2, "update", b'{"n":1}', b'{"n":2}', clock())
    assert same == StreamChange(same.position, "s", "g", "i", 3, "update", b'{"n":2}', b'{"n":2}', clock())
    assert deleted == StreamChange(deleted.position, "s", "g", "i", 4, "delete", b'{"n":2}', None, clock())
    # and the positions grow in commit order
    assert created.position < updated.position < same.position < deleted.position
    assert await backend.stream_position() == deleted.position


async def test_items_have_versions_and_keep_their_bytes(state: StateManager) -> None:
    backend = state.backend
    odd = b'{"z":1,"a":[1.0,1e3,"\\u00e9"]}'  # stored as given: never decoded or re-encoded
    await write(state, "g", "i", b"1")
    await write(state, "g", "i", odd)
    assert await backend.stream_get("s", "g", "i") == Record("i", odd, 2, None)
    await write(state, "g", "i", None)
    assert await backend.stream_get("s", "g", "i") is None
    # a re-created item starts again at version 1
    await write(state, "g", "i", b"3")
    assert await backend.stream_get("s", "g", "i") == Record("i", b"3", 1, None)
    assert await backend.stream_get("s", "g", "absent") is None
    assert await backend.stream_get("s", "absent", "i") is None
    assert await backend.stream_get("absent", "g", "i") is None


async def test_seq_counts_per_group_and_position_per_store(state: StateManager) -> None:
    changes = [
        await write(state, "a", "1", b"1"),
        await write(state, "b", "1", b"1"),
        await state.backend.stream_write("t", "a", "1", b"1", if_version=None, history=H),
        await write(state, "a", "2", b"1"),
        await write(state, "b", "1", None),
    ]
    assert [(c.stream, c.group, c.seq) for c in changes if c] == [
        ("s", "a", 1),
        ("s", "b", 1),
        ("t", "a", 1),
        ("s", "a", 2),
        ("s", "b", 2),
    ]
    positions = [c.position for c in changes if c]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_seq_keeps_counting_after_the_group_empties(state: StateManager) -> None:
    backend = state.backend
    await write(state, "g", "i", b"1")
    await write(state, "g", "i", None)
    # the group is empty: no longer listed, but its seq is kept
    assert await backend.stream_groups("s") == []
    assert await backend.stream_snapshot("s", "g", None) == (2, [])
    again = await write(state, "g", "i", b"2")
    assert again is not None and (again.seq, again.kind) == (3, "create")


async def test_deleting_an_absent_item_returns_none_and_records_nothing(state: StateManager) -> None:
    backend = state.backend
    await write(state, "g", "other", b"1")
    position = await backend.stream_position()
    assert await write(state, "g", "absent", None) is None
    assert await write(state, "new", "absent", None, if_version=0) is None
    assert await backend.stream_position() == position
    assert await backend.stream_snapshot("s", "g", None) == (1, [Record("other", b"1", 1, None)])
    assert await backend.stream_snapshot("s", "new", None) == (0, [])
    assert await backend.stream_tail(position, limit=10, wait=0) == []
    assert await backend.stream_groups("s") == ["g"]


@pytest.mark.parametrize(
    ("present", "data", "if_version"),
    [
        (False, b"1", 1),  # create expecting an existing item
        (True, b"2", 0),  # update expecting an absent one
        (True, b"2", 2),  # update at the wrong version
        (True, None, 3),  # delete at the wrong version
        (False, None, 1),  # delete of an absent item expecting one
    ],
)
async def test_if_version_conflicts_write_and_record_nothing(
    state: StateManager, present: bool, data: bytes | None, if_version: int
) -> None:
    backend = state.backend
    if present:
        await write(state, "g", "i", b"1")
    before = (await backend.stream_position(), await backend.stream_snapshot("s", "g", None))
    with pytest.raises(StateConflictError):
        await write(state, "g", "i", data, if_version=if_version)
    assert (await backend.stream_position(), await backend.stream_snapshot("s", "g", None)) == before


async def test_if_version_at_the_version_writes(state: StateManager) -> None:
    created = await write(state, "g", "i", b"1", if_version=0)
    updated = await write(state, "g", "i", b"2", if_version=1)
    deleted = await write(state, "g", "i", None, if_version=2)
    assert [c.kind for c in (created, updated, deleted) if c] == ["create", "update", "delete"]


async def test_send_records_an_event_and_stores_nothing(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await write(state, "g", "i", b"1")
    event = b'{"type":"typing","data":{"who":"ann"}}'
    sent = await backend.stream_send("s", "g", None, event, history=H)
    to_item = await backend.stream_send("s", "g", "i", event, history=H)
    # an event takes the group's next seq, carries the event as new_data, and changes no item
    assert sent == StreamChange(sent.position, "s", "g", None, 2, "event", None, event, clock())
    assert (to_item.item, to_item.seq, to_item.kind) == ("i", 3, "event")
    assert await backend.stream_snapshot("s", "g", None) == (3, [Record("i", b"1", 1, None)])
    # an event to a group with no item does not make it a listed group
    await backend.stream_send("s", "quiet", None, event, history=H)
    assert await backend.stream_groups("s") == ["g"]
    assert await backend.stream_get("s", "quiet", "i") is None


ODD_IDS = ["b", "a", "B", "é", "z", "😀", "\uffff", "a-1", "a_1", "10", "9", " "]


async def test_snapshot_lists_items_in_code_point_order_with_the_seq(state: StateManager) -> None:
    backend = state.backend
    for index, item in enumerate(ODD_IDS):
        await write(state, "g", item, str(index).encode())
    seq, records = await backend.stream_snapshot("s", "g", None)
    assert seq == len(ODD_IDS)
    assert [record.key for record in records] == sorted(ODD_IDS)
    assert all(record.data == str(ODD_IDS.index(record.key)).encode() for record in records)
    # one item: the same seq, its record or [] when absent
    assert await backend.stream_snapshot("s", "g", "😀") == (seq, [Record("😀", b"5", 1, None)])
    assert await backend.stream_snapshot("s", "g", "absent") == (seq, [])
    assert await backend.stream_snapshot("s", "none", None) == (0, [])


async def test_snapshot_is_atomic_with_its_seq(state: StateManager) -> None:
    """Each snapshot taken while another thread keeps creating items holds exactly ``seq`` items."""
    backend = state.backend
    count = 300

    async def create_all() -> None:
        for index in range(count):
            await backend.stream_write("s", "g", f"i{index:04}", b"1", if_version=None, history=H)

    failures: list[BaseException] = []

    def run_writer() -> None:
        try:
            asyncio.run(create_all())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            failures.append(exc)

    writer = threading.Thread(target=run_writer)
    writer.start()
    try:
        while writer.is_alive():
            seq, records = await backend.stream_snapshot("s", "g", None)
            assert len(records) == seq
            assert [record.key for record in records] == [f"i{index:04}" for index in range(seq)]
            await asyncio.sleep(0)
    finally:
        writer.join()
    assert not failures, failures
    assert await backend.stream_snapshot("s", "g", None) == (
        count,
        [Record(f"i{i:04}", b"1", 1, None) for i in range(count)],
    )


async def test_groups_and_names_are_sorted_and_only_non_empty(state: StateManager) -> None:
    backend = state.backend
    for stream, group in [("s", "b"), ("s", "a"), ("s", "é"), ("s", "B"), ("r", "x"), ("t", "gone")]:
        await backend.stream_write(stream, group, "i", b"1", if_version=None, history=H)
    await backend.stream_write("t", "gone", "i", None, if_version=None, history=H)
    await backend.stream_send("u", "events-only", None, b"{}", history=H)
    assert await backend.stream_groups("s") == ["B", "a", "b", "é"]
    assert await backend.stream_groups("t") == []
    assert await backend.stream_groups("u") == []
    assert await backend.stream_groups("absent") == []
    assert await backend.stream_names() == ["r", "s"]


async def test_streams_and_state_live_apart(state: StateManager) -> None:
    backend = state.backend
    await state.set("orders", "g", {"state": True})
    await backend.stream_write("orders", "g", "i", b"1", if_version=None, history=H)
    # stream items are not state scopes or keys, and state scopes are not stream groups
    assert await state.list_groups() == ["orders"]
    assert await backend.scopes() == ["orders"]
    assert [entry.key for entry in await state.items("orders")] == ["g"]
    assert await state.get("orders", "i") is None
    assert await backend.stream_groups("orders") == ["g"]
    await backend.stream_write("orders", "g", "i", None, if_version=None, history=H)
    assert await backend.stream_groups("orders") == []
    assert await backend.stream_names() == []
    await state.clear("orders")
    assert await backend.scopes() == []
    # a state write does not take a stream seq
    assert await backend.stream_snapshot("orders", "g", None) == (2, [])


async def test_a_listener_runs_after_each_change(state: StateManager) -> None:
    backend = state.backend
    calls: list[int] = []

    def listener() -> None:
        calls.append(1)

    backend.add_stream_listener(listener)
    await write(state, "g", "i", b"1")
    await backend.stream_send("s", "g", None, b"{}", history=H)
    assert len(calls) == 2
    backend.remove_stream_listener(listener)
    await write(state, "g", "i", None)
    assert len(calls) == 2


async def test_a_closed_store_raises_state_closed(state: StateManager) -> None:
    backend = state.backend
    await write(state, "g", "i", b"1")
    await state.aclose()
    calls = [
        backend.stream_get("s", "g", "i"),
        backend.stream_snapshot("s", "g", None),
        backend.stream_groups("s"),
        backend.stream_names(),
        backend.stream_write("s", "g", "i", b"2", if_version=None, history=H),
        backend.stream_send("s", "g", None, b"{}", history=H),
        backend.stream_history("s", "g", after=0, limit=10),
        backend.stream_position(),
        backend.stream_tail(0, limit=10, wait=0),
        backend.add_stream_subscriptions([StreamTriggerSubscription("step", "s")]),
    ]
    for call in calls:
        with pytest.raises(StateClosedError):
            await call


async def test_a_tail_waiting_when_the_store_closes_raises_state_closed(state: StateManager) -> None:
    backend = state.backend
    waiting = asyncio.create_task(backend.stream_tail(0, limit=10, wait=30))
    for _ in range(5):
        await asyncio.sleep(0)  # let it start waiting
    await state.aclose()
    with pytest.raises(StateClosedError):
        await asyncio.wait_for(waiting, 10)
