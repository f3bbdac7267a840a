"""SQLite write path on the loops users run (issue 15): inline commits on uvloop and asyncio, group commit
kept for concurrent writers, and a WAL that stays bounded while checkpoints leave writers running.

The loops are run explicitly (``asyncio.run`` / ``uvloop.run``) because ``motia run`` serves on uvloop,
which lacks the private ready queue of asyncio's loop that the write path once relied on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from motia import StateManager
from motia.state.backends.sqlite import SQLiteBackend
from motia.state.backends.sqlite import connection as sqlite_connection
from motia.state.backends.sqlite.writer import INLINE_STREAK


def spy_batches(backend: SQLiteBackend) -> list[int]:
    """Record the size of every batch the backend commits (a lone write, committed without a batch, counts
    as a batch of one; the real method still runs)."""
    sizes: list[int] = []
    after_commit = backend._after_commit

    def recording(writes: int) -> None:
        sizes.append(writes)
        after_commit(writes)

    backend._after_commit = recording  # type: ignore[method-assign]
    return sizes


def test_a_lone_writer_commits_inline_without_a_trip_through_the_loop(
    sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            # Given a callback the loop would run on its next round
            ran: list[bool] = []
            asyncio.get_running_loop().call_soon(ran.append, True)
            # When one task writes, one write after another
            for i in range(INLINE_STREAK):
                await state.set("s", f"k{i}", {"n": i})
            # Then every write committed without the loop going round (the callback has not run yet)
            assert ran == []
            assert await state.get("s", f"k{INLINE_STREAK - 1}") == {"n": INLINE_STREAK - 1}
            # And the next write yields to the loop (a tight writing loop does not starve other tasks)
            await state.set("s", "next", 1)
            assert ran == [True]

    run_loop(main())


def test_concurrent_writers_are_group_committed(
    sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            backend = state.backend
            assert isinstance(backend, SQLiteBackend)
            sizes = spy_batches(backend)

            async def writer(task: int) -> None:
                for i in range(20):
                    await state.set("s", f"t{task}-{i}", i)

            # When 50 tasks write side by side
            await asyncio.gather(*(writer(task) for task in range(50)))
            # Then all 1,000 writes committed, nearly all of them in batches of several
            assert sum(sizes) == 1000
            assert sum(size for size in sizes if size > 1) >= 900
            assert len(sizes) <= 100
            assert len(await state.list("s")) == 1000

    run_loop(main())


def test_after_a_burst_a_lone_writer_commits_inline_again(
    sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            backend = state.backend
            assert isinstance(backend, SQLiteBackend)
            # Given a burst of concurrent writes (group committed)
            await asyncio.gather(*(state.set("s", f"k{i}", i) for i in range(100)))
            sizes = spy_batches(backend)
            # When one task then writes alone, one write after another
            for i in range(100):
                await state.set("s", "alone", i)
            # Then after at most one queued write (which finds no company), its writes commit one at a time
            assert sizes == [1] * 100
            ran: list[bool] = []
            asyncio.get_running_loop().call_soon(ran.append, True)
            await state.set("s", "alone", "inline")
            assert ran == []

    run_loop(main())


def test_the_runtimes_calls_beside_a_lone_writer_leave_its_writes_inline(
    sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            backend = state.backend
            assert isinstance(backend, SQLiteBackend)
            await state.set("s", "warm", 0)
            order: list[str] = []

            async def runtime() -> None:
                await backend.claim(["count"], owner="worker", limit=1, lease=30)
                order.append("claimed")

            async def writer() -> None:
                await state.set("s", "k", 1)
                order.append("set")

            # Given the runtime's call (a claim, as the delivery worker makes) and a writer's set in one loop
            # round, the runtime's first
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(runtime()), loop.create_task(writer())]
            loop.call_soon(order.append, "loop went round")
            await asyncio.gather(*tasks)
            # Then both committed before the loop went round: the claim did not make the writer queue
            assert order == ["claimed", "set", "loop went round"]
            assert await state.get("s", "k") == 1

    run_loop(main())


def test_the_runtimes_call_joins_queued_writes(
    sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None]
) -> None:
    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            backend = state.backend
            assert isinstance(backend, SQLiteBackend)
            await state.set("s", "warm", 0)
            sizes = spy_batches(backend)

            async def runtime() -> None:
                await backend.claim(["count"], owner="worker", limit=1, lease=30)

            # Given two writers in one loop round (the second queues), then the runtime's call
            await asyncio.gather(state.set("s", "a", 1), state.set("s", "b", 2), runtime())
            # Then the call was group committed with the queued write, not alone
            assert sizes == [1, 2]

    run_loop(main())


def test_the_wal_stays_bounded_under_a_steady_write_load(
    sqlite_path: Path, sqlite_url: str, run_loop: Callable[[Coroutine[Any, Any, None]], None], monkeypatch: Any
) -> None:
    # A checkpoint every 100 writes (1,000 in production), so that a short run spans many checkpoints
    monkeypatch.setattr(sqlite_connection, "CHECKPOINT_WRITES", 100)
    wal = sqlite_path.with_name(sqlite_path.name + "-wal")

    async def main() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            largest = 0
            # When one writer writes steadily, never pausing for the checkpoints running beside it
            for i in range(5000):
                await state.set("s", f"k{i % 500}", {"n": i, "pad": "x" * 200})
                if i % 50 == 0:
                    largest = max(largest, os.path.getsize(wal))
            # Then the WAL never grew past a bound: it is restarted after each checkpoint, not appended to
            # forever (~4.5 MB here; passive checkpoints alone, which never restart it, left 22 MB, growing)
            assert 0 < largest < 8 * 1024 * 1024

    run_loop(main())


async def test_a_discarded_connection_is_not_used_for_inline_writes_again(sqlite_url: str) -> None:
    async with StateManager.from_url(sqlite_url) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "first", 0)  # the first write sweeps and trims, in a transaction
        await state.set("s", "k", 1)  # a lone write, inline: the loop's writer keeps the connection
        writer = backend._writers[asyncio.get_running_loop()]
        old = writer.connection
        assert old is not None
        # When the loop thread's connection is discarded (as after a read-only file or a failed rollback)
        backend._discard(old)
        # Then the loop's writer forgets it, and the next write opens and keeps a new one
        assert writer.connection is None
        assert (await state.set("s", "k", 2)).version == 2
        assert writer.connection is not None and writer.connection is not old
        assert await state.get("s", "k") == 2
