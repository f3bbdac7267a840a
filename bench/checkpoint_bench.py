"""WAL checkpoints and write throughput: pymotia's checkpoint against the RESTART-only one it replaced.

Run from the repository root:

    .venv/bin/python bench/checkpoint_bench.py               # 3 interleaved rounds, 20,000 writes each
    .venv/bin/python bench/checkpoint_bench.py --loop asyncio

Same code and store otherwise: the "RESTART only" rows put the old checkpoint back (one
``wal_checkpoint(RESTART)``, which holds the write lock for the whole copy, so writers meanwhile move
to a worker thread and wait in SQLite's busy handler). Workload: ``set`` of the ``sessions`` values on
a 1,000-key scope, one task writing one at a time, then 200 tasks side by side; the WAL file's size
at the end of each round (before the store closes) shows that it stays bounded either way.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _loops import add_loop_option, run_on
from motia import StateManager
from motia.state.backends.sqlite.connection import SQLiteConnections

_counter = itertools.count()
NEW: Callable[[SQLiteConnections], None] = SQLiteConnections._checkpoint


def restart_only(self: SQLiteConnections) -> None:
    """The checkpoint before issue 15."""
    try:
        self._connection(inline=False).execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
    except sqlite3.Error:
        pass
    finally:
        self._checkpointing = False


def value() -> dict[str, object]:
    return {"userId": "42", "expiresAt": next(_counter), "data": {}}


async def measure(checkpoint: Callable[[SQLiteConnections], None], writes: int, workdir: Path) -> list[float]:
    SQLiteConnections._checkpoint = checkpoint  # type: ignore[method-assign]
    path = Path(tempfile.mkdtemp(dir=workdir)) / "state.db"
    async with StateManager.from_url(f"sqlite:///{path}") as state:
        for index in range(1000):
            await state.set("sessions", f"k{index}", value())
        start = time.perf_counter()
        for index in range(writes):
            await state.set("sessions", f"k{index % 1000}", value())
        sequential = writes / (time.perf_counter() - start)

        async def writer(task: int) -> None:
            for index in range(writes // 200):
                await state.set("sessions", f"k{(task * 100 + index) % 1000}", value())

        start = time.perf_counter()
        await asyncio.gather(*(writer(task) for task in range(200)))
        concurrent = writes // 200 * 200 / (time.perf_counter() - start)
        wal = path.with_name("state.db-wal").stat().st_size / 1024 / 1024  # before closing checkpoints it away
    return [sequential, concurrent, wal]


async def run(args: argparse.Namespace) -> None:
    samples: dict[str, list[list[float]]] = {"pymotia (PASSIVE, then the tail)": [], "RESTART only (before)": []}
    with tempfile.TemporaryDirectory(prefix="motia-ckpt-bench-") as directory:
        for _ in range(args.rounds):
            for name, checkpoint in zip(samples, (NEW, restart_only), strict=True):
                samples[name].append(await measure(checkpoint, args.writes, Path(directory)))
    SQLiteConnections._checkpoint = NEW  # type: ignore[method-assign]
    print(f"\n### WAL checkpoints, {args.loop} loop, median of {args.rounds} interleaved rounds\n")
    print("| checkpoint | sequential set | 200 tasks set | WAL file after the round (max) |")
    print("|---|---|---|---|")
    medians = {}
    for name, rows in samples.items():
        medians[name] = [statistics.median(row[column] for row in rows) for column in range(2)]
        largest = max(row[2] for row in rows)
        print(f"| {name} | {medians[name][0]:,.0f}/s | {medians[name][1]:,.0f}/s | {largest:.1f} MB |")
    new, old = medians.values()
    print(f"\npymotia / RESTART only: sequential {new[0] / old[0]:.2f}x, 200 tasks {new[1] / old[1]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=20_000, help="writes per figure")
    add_loop_option(parser)
    args = parser.parse_args()
    run_on(args.loop, run(args))


if __name__ == "__main__":
    main()
