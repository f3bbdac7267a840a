"""The stream change log (``StreamStore.stream_history`` and ``stream_tail``), run over every backend: history bounds
(``None`` when trimmed or beyond the group's seq, ``[]`` at it, ``limit``), the tail in position order, its ``wait``
(woken by a commit from another task or thread, ``[]`` after the wait, cancellable)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from motia.state.backends.base import StreamChange
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

#: The tail keeps every change younger than this (seconds) and at least the newest TAIL_KEEP (the contract).
TAIL_AGE = 60.0
TAIL_KEEP = 10_000


async def changes(state: StateManager, group: str, count: int, *, history: int = 100) -> list[StreamChange]:
    made = []
    for index in range(count):
        change = await state.backend.stream_write("s", group, f"i{index}", b"1", if_version=None, history=history)
        assert change is not None
        made.append(change)
    return made


async def test_history_gives_the_changes_after_a_seq_in_order(state: StateManager) -> None:
    backend = state.backend
    made = await changes(state, "g", 5)
    await changes(state, "other", 3)
    assert await backend.stream_history("s", "g", after=0, limit=100) == made
    assert await backend.stream_history("s", "g", after=2, limit=100) == made[2:]
    assert await backend.stream_history("s", "g", after=1, limit=2) == made[1:3]
    # at the current seq: nothing to give; beyond it (a cursor from another store): None
    assert await backend.stream_history("s", "g", after=5, limit=100) == []
    assert await backend.stream_history("s", "g", after=6, limit=100) is None
    assert await backend.stream_history("s", "never", after=0, limit=100) == []
    assert await backend.stream_history("s", "never", after=1, limit=100) is None


async def test_history_keeps_at_least_the_last_history_changes(state: StateManager) -> None:
    backend = state.backend
    made = await changes(state, "g", 8, history=3)
    # the last 3 are always there; what is older may be gone, and then the answer is None, never a gap
    assert await backend.stream_history("s", "g", after=5, limit=100) == made[5:]
    for after in range(5):
        found = await backend.stream_history("s", "g", after=after, limit=100)
        assert found is None or found == made[after:]


async def test_history_is_none_once_trimmed(state: StateManager, clock: Any) -> None:
    """Changes past ``history`` that the tail no longer needs (older than a minute, not among the newest
    10,000) are gone: a resume from before them gets ``None`` (a full sync), after them the changes."""
    backend = state.backend
    await changes(state, "g", 5, history=2)
    clock.advance(TAIL_AGE * 2)
    for start in range(0, TAIL_KEEP + 1, 500):
        await asyncio.gather(
            *(backend.stream_send("s", "busy", None, b"{}", history=1) for _ in range(min(500, TAIL_KEEP + 1 - start)))
        )
    newest = await backend.stream_write("s", "g", "last", b"2", if_version=None, history=2)
    assert newest is not None and newest.seq == 6
    assert await backend.stream_history("s", "g", after=0, limit=100) is None
    assert await backend.stream_history("s", "g", after=3, limit=100) is None
    kept = await backend.stream_history("s", "g", after=4, limit=100)
    assert kept is not None and [change.seq for change in kept] == [5, 6] and kept[-1] == newest


async def test_tail_lists_every_change_in_position_order(state: StateManager) -> None:
    backend = state.backend
    assert await backend.stream_position() == 0
    assert await backend.stream_tail(0, limit=100, wait=0) == []
    made = []
    for index in range(6):
        group = "ab"[index % 2]
        made += await changes(state, group, 1)
    made.append(await backend.stream_send("t", "a", None, b"{}", history=10))
    tail = await backend.stream_tail(0, limit=100, wait=0)
    assert tail == made
    assert [change.position for change in tail] == sorted(change.position for change in tail)
    assert await backend.stream_position() == made[-1].position
    # after a position, and at most limit
    assert await backend.stream_tail(made[2].position, limit=2, wait=0) == made[3:5]
    assert await backend.stream_tail(made[-1].position, limit=100, wait=0) == []


async def test_tail_returns_empty_after_its_wait(state: StateManager) -> None:
    backend = state.backend
    await changes(state, "g", 1)
    position = await backend.stream_position()
    started = time.monotonic()
    assert await backend.stream_tail(position, limit=10, wait=0.3) == []
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 5


async def test_a_waiting_tail_wakes_on_a_commit_from_another_task(state: StateManager) -> None:
    backend = state.backend
    position = await backend.stream_position()
    started = time.monotonic()
    waiting = asyncio.create_task(backend.stream_tail(position, limit=10, wait=30))
    for _ in range(5):
        await asyncio.sleep(0)  # let it start waiting
    assert not waiting.done()
    (made,) = await changes(state, "g", 1)
    assert await asyncio.wait_for(waiting, 10) == [made]
    assert time.monotonic() - started < 5  # woken, not timed out


async def test_a_waiting_tail_wakes_on_a_commit_from_another_thread(state: StateManager) -> None:
    backend = state.backend
    position = await backend.stream_position()
    waiting = asyncio.create_task(backend.stream_tail(position, limit=10, wait=30))
    for _ in range(5):
        await asyncio.sleep(0)
    made: list[StreamChange | None] = []

    def other_thread() -> None:
        made.append(asyncio.run(backend.stream_write("s", "g", "i", b"1", if_version=None, history=10)))

    started = time.monotonic()
    thread = threading.Thread(target=other_thread)
    thread.start()
    found = await asyncio.wait_for(waiting, 10)
    thread.join()
    assert found == made
    assert time.monotonic() - started < 5


async def test_a_cancelled_tail_leaves_the_store_usable(state: StateManager) -> None:
    backend = state.backend
    waiting = asyncio.create_task(backend.stream_tail(0, limit=10, wait=30))
    for _ in range(5):
        await asyncio.sleep(0)
    waiting.cancel()
    try:
        await waiting
    except asyncio.CancelledError:
        pass
    assert waiting.cancelled()
    (made,) = await changes(state, "g", 1)
    assert await backend.stream_tail(0, limit=10, wait=5) == [made]
    # and a new waiter is woken as before
    again = asyncio.create_task(backend.stream_tail(made.position, limit=10, wait=30))
    for _ in range(5):
        await asyncio.sleep(0)
    (second,) = await changes(state, "h", 1)
    assert await asyncio.wait_for(again, 10) == [second]


async def test_tail_sees_each_group_in_seq_order_under_concurrent_writers(state: StateManager) -> None:
    backend = state.backend

    async def writer(group: str) -> None:
        for index in range(40):
            await backend.stream_write("s", group, f"i{index % 3}", str(index).encode(), if_version=None, history=100)

    await asyncio.gather(*(writer(f"g{n}") for n in range(5)))
    tail: list[StreamChange] = []
    while batch := await backend.stream_tail(tail[-1].position if tail else 0, limit=37, wait=0):
        tail += batch
    assert len(tail) == 200
    for n in range(5):
        assert [change.seq for change in tail if change.group == f"g{n}"] == list(range(1, 41))
