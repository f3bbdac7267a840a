"""State benchmark: pymotia's StateManager (SQLite, memory) against raw sqlite3 doing the same work.

Run from the repository root:

    .venv/bin/python bench/state_bench.py                  # sequential + concurrent, N=1,000 and 10,000
    .venv/bin/python bench/state_bench.py --scale 1000000  # adds set / items(limit=100) cost at 1k vs 1M keys
    .venv/bin/python bench/state_bench.py --loop asyncio   # on asyncio's own loop instead

It runs on the event loop ``motia run`` serves on: uvloop when it is installed (uvicorn's ``loop="auto"``
picks it; ``uvicorn[standard]`` installs it), else asyncio's. Every table says which loop it ran on.

The workload follows ../shared/peers: scope ``sessions``, keys ``k0..kN-1``, values
``{"userId": "42", "expiresAt": <counter>, "data": {}}`` (a fresh value per write, see ``next_value``),
one awaited operation at a time unless stated. A sequential row is timed over at least ``--window`` operations
(10,000 by default; the shuffled keys gone through again as needed), so that each side's periodic WAL checkpoints
fall in it at the rate they come (see ``SEQUENTIAL_OPERATIONS``).
The peer is raw ``sqlite3`` in WAL mode with ``synchronous=NORMAL`` and one transaction per operation
(autocommit), measured in the same process and run. The concurrent rows have a second peer, raw ``sqlite3``
committing the same operations in groups of ``--tasks`` (``BEGIN IMMEDIATE``, one ``executemany`` of the group's
upserts, or for ``update`` one read of the group's rows, the change in Python and one ``executemany``, ``COMMIT``):
no framework at all, so the most any framework on ``sqlite3`` could do with that group (the "vs raw group
commit" rows). Each figure is the median of ``--repeat`` rounds;
the rounds of pymotia and of the peer are interleaved so that machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

from _loops import add_loop_option, run_on
from motia import StateManager

SCOPE = "sessions"
_counter = itertools.count()


def next_value() -> dict[str, object]:
    """A session value whose ``expiresAt`` changes every call.

    A real write changes the value. SQLite skips the page write when a row is overwritten with
    byte-identical content, so writing one constant value would time commits that write nothing.
    """
    return {"userId": "42", "expiresAt": next(_counter), "data": {}}


INCREMENT = [{"type": "increment", "path": "expiresAt", "value": 1}]


# -- the peer: raw sqlite3, one transaction per operation --------------------------------------------


class RawSQLite:
    def __init__(self, path: Path) -> None:
        self.connection = sqlite3.connect(path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS kv (scope TEXT, key TEXT, value BLOB, PRIMARY KEY (scope, key)) WITHOUT ROWID"
        )

    def set(self, key: str) -> None:
        self.connection.execute(
            "INSERT INTO kv (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            (SCOPE, key, orjson.dumps(next_value())),
        )

    def get(self, key: str) -> object:
        row = self.connection.execute("SELECT value FROM kv WHERE scope = ? AND key = ?", (SCOPE, key)).fetchone()
        return orjson.loads(row[0]) if row else None

    def update_txn(self, key: str) -> None:
        """What ``update`` is: read, change in the application, write, in one IMMEDIATE transaction."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        row = connection.execute("SELECT value FROM kv WHERE scope = ? AND key = ?", (SCOPE, key)).fetchone()
        value = orjson.loads(row[0])
        value["expiresAt"] += 1
        connection.execute("UPDATE kv SET value = ? WHERE scope = ? AND key = ?", (orjson.dumps(value), SCOPE, key))
        connection.execute("COMMIT")

    def group_set(self, keys: list[str]) -> None:
        """What group commit is at its cheapest: the sets of ``keys`` in one transaction, one ``executemany``."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT INTO kv (scope, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value",
            [(SCOPE, key, orjson.dumps(next_value())) for key in keys],
        )
        connection.execute("COMMIT")

    def group_update(self, keys: list[str]) -> None:
        """The updates of ``keys`` in one transaction: one read of their rows, the change in Python, one
        ``executemany`` (a key updated twice in the group is read once and written once, with both changes)."""
        connection = self.connection
        connection.execute("BEGIN IMMEDIATE")
        distinct = list(dict.fromkeys(keys))
        rows = connection.execute(
            f"SELECT key, value FROM kv WHERE scope = ? AND key IN ({','.join('?' * len(distinct))})",
            (SCOPE, *distinct),
        ).fetchall()
        values = {key: orjson.loads(data) for key, data in rows}
        for key in keys:
            values[key]["expiresAt"] += 1
        connection.executemany(
            "UPDATE kv SET value = ? WHERE scope = ? AND key = ?",
            [(orjson.dumps(value), SCOPE, key) for key, value in values.items()],
        )
        connection.execute("COMMIT")

    def update_json_set(self, key: str) -> None:
        """The cheapest atomic increment SQLite has: one UPDATE with json_set."""
        self.connection.execute(
            "UPDATE kv SET value = json_set(value, '$.expiresAt', json_extract(value, '$.expiresAt') + 1) "
            "WHERE scope = ? AND key = ?",
            (SCOPE, key),
        )


# -- timing helpers ----------------------------------------------------------------------------------


#: Operations per timed sequential window at least (``--window``): the keys are gone through as many times as it
#: takes. Both sides checkpoint their WAL every so often (raw sqlite3 every 1,000 WAL pages, inline; pymotia every
#: 1,000 rows, on a worker thread), and a checkpoint costs about a millisecond here. A window of 1,000 operations
#: (what the sequential rows timed before session 31, one pass over N=1,000 keys) holds none, one or two of raw's,
#: so its per-op rate moved by ±25 % between rounds, and the median of such windows read ~5-8 % above its rate over
#: longer ones; a window of several checkpoint periods counts each side's checkpoints at the rate they come, as the
#: concurrent rows' windows of ``CONCURRENT_OPERATIONS`` always have.
SEQUENTIAL_OPERATIONS = 10_000


def window(keys: list[str], operations: int) -> list[str]:
    """``keys`` repeated to make at least ``operations`` calls (once if they are enough)."""
    return keys * max(1, -(-operations // len(keys)))


def time_sync(function: Callable[[str], object], keys: list[str]) -> float:
    """Operations per second of calling ``function`` once per key."""
    start = time.perf_counter()
    for key in keys:
        function(key)
    return len(keys) / (time.perf_counter() - start)


async def time_async(function: Callable[[str], Awaitable[object]], keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        await function(key)
    return len(keys) / (time.perf_counter() - start)


#: Operations per concurrent round at least, so that task start-up does not dominate small scopes.
CONCURRENT_OPERATIONS = 20_000


async def time_concurrent(function: Callable[[str], Awaitable[object]], keys: list[str], tasks: int) -> float:
    """Operations per second with ``tasks`` tasks sharing the keys, each awaiting one call at a time."""
    keys = keys * max(1, CONCURRENT_OPERATIONS // len(keys))
    chunks = [keys[index::tasks] for index in range(tasks)]

    async def worker(chunk: list[str]) -> None:
        for key in chunk:
            await function(key)

    start = time.perf_counter()
    await asyncio.gather(*(worker(chunk) for chunk in chunks))
    return len(keys) / (time.perf_counter() - start)


def time_groups(function: Callable[[list[str]], object], keys: list[str], tasks: int) -> float:
    """Operations per second of ``time_concurrent``'s workload committed in groups of ``tasks``: the batches its
    tasks make (task ``t``'s ``j``-th call is ``keys[t + j * tasks]``, so round ``j`` is one slice), each group one
    call of ``function``."""
    keys = keys * max(1, CONCURRENT_OPERATIONS // len(keys))
    start = time.perf_counter()
    for first in range(0, len(keys), tasks):
        function(keys[first : first + tasks])
    return len(keys) / (time.perf_counter() - start)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def fmt_rate(rate: float) -> str:
    return f"{rate / 1000:,.1f}k/s" if rate >= 1000 else f"{rate:,.0f}/s"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    print(f"\n### {title}\n")
    print("| " + " | ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)) + " |")


# -- benchmarks --------------------------------------------------------------------------------------


async def sequential_and_concurrent(
    n: int, repeat: int, tasks: int, workdir: Path, operations: int = SEQUENTIAL_OPERATIONS
) -> list[list[str]]:
    keys = [f"k{index}" for index in range(n)]
    raw = RawSQLite(workdir / f"raw-{n}.db")
    sqlite_state = StateManager.from_url(f"sqlite:///{workdir / f'pymotia-{n}.db'}")
    memory_state = StateManager.from_url("memory://")
    samples: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        samples.setdefault(name, []).append(value)

    for state in (sqlite_state, memory_state):
        for key in keys:
            await state.set(SCOPE, key, next_value())
    for key in keys:
        raw.set(key)

    for _ in range(repeat):
        shuffled = random.sample(keys, len(keys))
        sequential = window(shuffled, operations)
        gc.collect()
        add("raw set", time_sync(raw.set, sequential))
        add("raw get", time_sync(raw.get, sequential))
        add("raw update (txn get+set)", time_sync(raw.update_txn, sequential))
        add("raw update (json_set)", time_sync(raw.update_json_set, sequential))
        add(f"raw set group of {tasks}", time_groups(raw.group_set, shuffled, tasks))
        add(f"raw update group of {tasks}", time_groups(raw.group_update, shuffled, tasks))
        for label, state in (("sqlite", sqlite_state), ("memory", memory_state)):

            async def do_set(key: str, state: StateManager = state) -> object:
                return await state.set(SCOPE, key, next_value())

            async def do_get(key: str, state: StateManager = state) -> object:
                return await state.get(SCOPE, key)

            async def do_update(key: str, state: StateManager = state) -> object:
                return await state.update(SCOPE, key, INCREMENT)

            gc.collect()
            add(f"{label} set", await time_async(do_set, sequential))
            add(f"{label} get", await time_async(do_get, sequential))
            add(f"{label} update", await time_async(do_update, sequential))
            add(f"{label} set x{tasks}", await time_concurrent(do_set, shuffled, tasks))
            add(f"{label} update x{tasks}", await time_concurrent(do_update, shuffled, tasks))

    await sqlite_state.aclose()
    await memory_state.aclose()
    raw.connection.close()
    m = {name: median(values) for name, values in samples.items()}
    rows = []
    for operation, peer in (("get", "raw get"), ("set", "raw set"), ("update", "raw update (txn get+set)")):
        rows.append(
            [
                f"{n:,}",
                f"sequential {operation}",
                fmt_rate(m[f"sqlite {operation}"]),
                fmt_rate(m[f"memory {operation}"]),
                fmt_rate(m[peer]),
                f"{m[f'sqlite {operation}'] / m[peer]:.2f}x",
            ]
        )
    rows.append(
        [
            f"{n:,}",
            "sequential update vs json_set",
            fmt_rate(m["sqlite update"]),
            "",
            fmt_rate(m["raw update (json_set)"]),
            f"{m['sqlite update'] / m['raw update (json_set)']:.2f}x",
        ]
    )
    for operation, peer in (("set", "raw set"), ("update", "raw update (txn get+set)")):
        rows.append(
            [
                f"{n:,}",
                f"{tasks} tasks {operation}",
                fmt_rate(m[f"sqlite {operation} x{tasks}"]),
                fmt_rate(m[f"memory {operation} x{tasks}"]),
                fmt_rate(m[peer]) + " (per-op commit)",
                f"{m[f'sqlite {operation} x{tasks}'] / m[peer]:.2f}x",
            ]
        )
    for operation in ("set", "update"):
        group = m[f"raw {operation} group of {tasks}"]
        rows.append(
            [
                f"{n:,}",
                f"{tasks} tasks {operation} vs raw group commit",
                fmt_rate(m[f"sqlite {operation} x{tasks}"]),
                "",
                fmt_rate(group) + f" (groups of {tasks}: the ceiling)",
                f"{m[f'sqlite {operation} x{tasks}'] / group:.2f}x",
            ]
        )
    return rows


def rss_megabytes() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def scale(big: int, repeat: int, workdir: Path) -> list[list[str]]:
    """Cost of ``set`` and of an ``items(limit=100)`` page as the scope grows from 1,000 to ``big`` keys."""
    rows = []
    results: dict[int, dict[str, float]] = {}
    for size in (1000, big):
        path = workdir / f"scale-{size}.db"
        state = StateManager.from_url(f"sqlite:///{path}")
        fill_start = time.perf_counter()
        batch = 2000
        for start in range(0, size, batch):
            await asyncio.gather(
                *(state.set(SCOPE, f"k{index:08d}", next_value()) for index in range(start, min(size, start + batch)))
            )
        fill_seconds = time.perf_counter() - fill_start
        set_rates, page_rates = [], []
        for _ in range(repeat):
            targets = [f"k{random.randrange(size):08d}" for _ in range(2000)]
            start_time = time.perf_counter()
            for key in targets:
                await state.set(SCOPE, key, next_value())
            set_rates.append(len(targets) / (time.perf_counter() - start_time))
            afters = [f"k{random.randrange(size):08d}" for _ in range(300)]
            start_time = time.perf_counter()
            for after in afters:
                await state.items(SCOPE, after=after, limit=100)
            page_rates.append(len(afters) / (time.perf_counter() - start_time))
        results[size] = {
            "set": median(set_rates),
            "page": median(page_rates),
            "fill": size / fill_seconds,
            "rss": rss_megabytes(),
            "file": path.stat().st_size / 1024 / 1024,
        }
        await state.aclose()
    small, large = results[1000], results[big]
    rows.append(
        [
            "set (random key)",
            fmt_rate(small["set"]),
            fmt_rate(large["set"]),
            f"{small['set'] / large['set']:.2f}x",
        ]
    )
    rows.append(
        [
            "items(after=random, limit=100)",
            fmt_rate(small["page"]),
            fmt_rate(large["page"]),
            f"{small['page'] / large['page']:.2f}x",
        ]
    )
    rows.append(["fill (2,000 concurrent sets at a time)", fmt_rate(small["fill"]), fmt_rate(large["fill"]), ""])
    rows.append(["process RSS after the run", "", f"{large['rss']:.0f} MB", ""])
    rows.append(["database file", "", f"{large['file']:.0f} MB", ""])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000", help="scope sizes N (comma-separated)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per figure (median reported)")
    parser.add_argument("--tasks", type=int, default=200, help="concurrent tasks for the concurrent rows")
    parser.add_argument("--scale", type=int, default=0, help="also measure set/items cost at this many keys")
    parser.add_argument(
        "--window",
        type=int,
        default=SEQUENTIAL_OPERATIONS,
        help="operations per timed sequential window at least (the keys gone through again as needed)",
    )
    add_loop_option(parser)
    args = parser.parse_args()
    run_on(args.loop, run(args))


async def run(args: argparse.Namespace) -> None:
    print(
        f"pymotia state benchmark — python {os.sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"{os.cpu_count()} cores, {args.loop} event loop, median of {args.repeat} interleaved rounds, "
        f"sequential windows of {args.window:,} operations at least"
    )
    with tempfile.TemporaryDirectory(prefix="motia-bench-") as directory:
        workdir = Path(directory)
        rows = []
        for n in (int(size) for size in args.sizes.split(",")):
            rows.extend(await sequential_and_concurrent(n, args.repeat, args.tasks, workdir, args.window))
        print_table(
            f"StateManager vs raw sqlite3 (WAL, synchronous=NORMAL, one transaction per op), {args.loop} loop",
            ["N", "workload", "pymotia sqlite", "pymotia memory", "raw sqlite3", "sqlite ratio"],
            rows,
        )
        if args.scale:
            print_table(
                f"Scale: cost at 1,000 vs {args.scale:,} keys in one scope (pymotia sqlite), {args.loop} loop",
                ["operation", "1,000 keys", f"{args.scale:,} keys", "slowdown"],
                await scale(args.scale, args.repeat, workdir),
            )


if __name__ == "__main__":
    main()
