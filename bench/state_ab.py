"""A short A/B of SQLite writes: pymotia against raw sqlite3 per-op commits, as wall-clock and as CPU-time ratios.

Run from the repository root, alternating the code under test with ``PYTHONPATH``:

    for src in /tmp/before/src src /tmp/before/src src; do PYTHONPATH=$src .venv/bin/python bench/state_ab.py; done

The workload of ``state_bench.py`` (scope ``sessions``, 10,000 keys, a fresh value per write), shorter:
each round writes 3,000 random keys one at a time with raw sqlite3 (autocommit upsert; ``update`` as a
``BEGIN IMMEDIATE`` read-change-write transaction) and then with pymotia, and 6,000 keys from 200 tasks
with pymotia; each ratio is pymotia's rate over the raw rate of the same round, median of ``ROUNDS``
(default 7). Besides wall-clock rates it prints the same ratios in CPU time of the process (all its
threads): on a machine loaded by other processes, wall-clock rates mostly measure the scheduler, while
CPU time per operation still measures the work each side does (neither side fsyncs per commit here:
WAL with ``synchronous=NORMAL``). It runs on uvloop, the loop ``motia run`` serves on.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

import motia
from motia import StateManager
from state_bench import INCREMENT, SCOPE, RawSQLite, next_value

N = 10_000
TASKS = 200


def timed_sync(function: Callable[[str], object], keys: list[str]) -> tuple[float, float]:
    """(operations per wall second, operations per CPU second)."""
    wall, cpu = time.perf_counter(), time.process_time()
    for key in keys:
        function(key)
    return len(keys) / (time.perf_counter() - wall), len(keys) / (time.process_time() - cpu)


async def timed_async(
    function: Callable[[str], Awaitable[object]], keys: list[str], tasks: int = 1
) -> tuple[float, float]:
    async def worker(chunk: list[str]) -> None:
        for key in chunk:
            await function(key)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(keys[index::tasks]) for index in range(tasks)))
    return len(keys) / (time.perf_counter() - wall), len(keys) / (time.process_time() - cpu)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="motia-ab-") as directory:
        raw = RawSQLite(Path(directory) / "raw.db")
        state = StateManager.from_url(f"sqlite:///{directory}/pymotia.db")
        keys = [f"k{index}" for index in range(N)]
        for key in keys:
            await state.set(SCOPE, key, next_value())
            raw.set(key)

        async def do_set(key: str) -> object:
            return await state.set(SCOPE, key, next_value())

        async def do_update(key: str) -> object:
            return await state.update(SCOPE, key, INCREMENT)

        ratios: dict[str, list[float]] = {}

        def add(name: str, mine: tuple[float, float], peer: tuple[float, float]) -> None:
            ratios.setdefault(f"{name} wall", []).append(mine[0] / peer[0])
            ratios.setdefault(f"{name} cpu", []).append(mine[1] / peer[1])

        for _ in range(int(os.environ.get("ROUNDS", "7"))):
            sample = random.sample(keys, 3000)
            raw_set = timed_sync(raw.set, sample)
            add("set", await timed_async(do_set, sample), raw_set)
            add("update", await timed_async(do_update, sample), timed_sync(raw.update_txn, sample))
            add(f"set x{TASKS}", await timed_async(do_set, random.sample(keys, 6000), TASKS), raw_set)
        await state.aclose()
        raw.connection.close()
    source = motia.__file__.split("/src/")[0]
    print(source, {name: round(statistics.median(values), 2) for name, values in ratios.items()})


if __name__ == "__main__":
    uvloop.run(main())
