"""Stream retention (``prune(stream_age=...)``): changes older than the age leave the groups' histories, groups left
with no item and no change are forgotten, and a ``seq`` never repeats within a group (a forgotten group written again
counts on from the store's floor). Run over every backend with the fake clock.

Each test ends its set-up with a fresh change in a group of its own: the SQLite log keeps its newest change whatever
its age (it numbers positions), as a store in use always has one."""

from __future__ import annotations

from typing import Any

import pytest

from motia.exceptions import StateValueError
from motia.state.backends.base import PruneResult
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

DAY = 86_400.0


async def write(state: StateManager, group: str, item: str, data: bytes | None, history: int = 100) -> Any:
    return await state.backend.stream_write("chat", group, item, data, if_version=None, history=history)


async def test_prune_removes_changes_older_than_the_age_and_keeps_items_and_seq(
    state: StateManager, clock: Any
) -> None:
    backend = state.backend
    # Given three changes of a group two days ago, and one now
    await write(state, "room", "a", b'{"t":1}')
    await write(state, "room", "a", b'{"t":2}')
    await write(state, "room", "b", b'{"t":3}')
    clock.advance(2 * DAY)
    await write(state, "room", "b", b'{"t":4}')
    await write(state, "other", "x", b"{}")
    # When retention keeps a day of stream history
    result = await backend.prune(dead_letter_age=None, step_age=None, stream_age=DAY)
    # Then the three old changes are gone, though the group's history (100) would have kept them
    assert result == PruneResult(0, 0, 0, stream_changes=3, stream_groups=0)
    assert await backend.stream_history("chat", "room", after=0, limit=10) is None  # resume: a full sync
    kept = await backend.stream_history("chat", "room", after=3, limit=10)
    assert kept is not None and [(c.seq, c.new_data) for c in kept] == [(4, b'{"t":4}')]
    # and the items, the group and its seq stay
    seq, records = await backend.stream_snapshot("chat", "room", None)
    assert seq == 4
    assert [(r.key, r.data) for r in records] == [("a", b'{"t":2}'), ("b", b'{"t":4}')]
    assert (await write(state, "room", "c", b"{}")).seq == 5
    # and pruning again removes nothing more
    assert await backend.prune(dead_letter_age=None, step_age=None, stream_age=DAY) == PruneResult(0, 0, 0)


async def test_a_group_whose_items_and_changes_are_all_gone_is_forgotten_and_its_seq_never_repeats(
    state: StateManager, clock: Any
) -> None:
    backend = state.backend
    # Given a group whose only item was created and deleted two days ago (seq 2), and a group written now
    await write(state, "room", "a", b"{}")
    await write(state, "room", "a", None)
    clock.advance(2 * DAY)
    await write(state, "other", "x", b"{}")
    assert (await backend.stats()).stream_groups == 2
    # When retention keeps a day
    result = await backend.prune(dead_letter_age=None, step_age=None, stream_age=DAY)
    # Then the empty group is forgotten with its changes
    assert (result.stream_changes, result.stream_groups) == (2, 1)
    assert (await backend.stats()).stream_groups == 1
    # and should it be written again, it counts on after every seq it had: a snapshot says where from
    seq, records = await backend.stream_snapshot("chat", "room", None)
    assert (seq, records) == (2, [])
    again = await write(state, "room", "a", b'{"new":true}')
    assert again.seq == 3
    # so a client resuming from the old group's seq 1 gets a full sync, and one from the snapshot the change
    assert await backend.stream_history("chat", "room", after=1, limit=10) is None
    assert [c.seq for c in await backend.stream_history("chat", "room", after=2, limit=10) or []] == [3]
    # and a group never seen before starts after the floor too (its snapshot says so)
    assert (await backend.stream_snapshot("chat", "new-room", None))[0] == 2
    assert (await write(state, "new-room", "a", b"{}")).seq == 3


async def test_young_changes_and_groups_with_items_stay(state: StateManager, clock: Any) -> None:
    backend = state.backend
    # Given a group with an item whose changes are all old, and a group with young changes only
    await write(state, "old", "a", b"{}")
    clock.advance(2 * DAY)
    await write(state, "young", "a", b"{}")
    await write(state, "young", "a", None)
    # When retention keeps a day
    result = await backend.prune(dead_letter_age=None, step_age=None, stream_age=DAY)
    # Then the old group keeps its item and seq (only its change goes); the young group is left alone
    assert (result.stream_changes, result.stream_groups) == (1, 0)
    assert await backend.stream_groups("chat") == ["old"]
    assert (await backend.stream_snapshot("chat", "old", None))[0] == 1
    assert await backend.stream_history("chat", "old", after=1, limit=10) == []
    assert await backend.stream_history("chat", "old", after=0, limit=10) is None
    assert [c.seq for c in await backend.stream_history("chat", "young", after=0, limit=10) or []] == [1, 2]
    assert (await write(state, "old", "b", b"{}")).seq == 2


async def test_stream_age_none_keeps_everything_and_a_bad_age_changes_nothing(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await write(state, "room", "a", b"{}")
    clock.advance(2 * DAY)
    await write(state, "other", "x", b"{}")
    assert await backend.prune(dead_letter_age=None, step_age=None) == PruneResult(0, 0, 0)
    for bad in (-1, float("nan"), float("inf"), "1", True):
        with pytest.raises(StateValueError):
            await backend.prune(dead_letter_age=None, step_age=None, stream_age=bad)  # type: ignore[arg-type]
    assert [c.seq for c in await backend.stream_history("chat", "room", after=0, limit=10) or []] == [1]
