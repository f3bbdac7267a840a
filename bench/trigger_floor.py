"""The floor under a durable state trigger: the least work any implementation on SQLite must do per event, and
what it leaves of issue 15's trigger targets.

Run from the repository root:

    .venv/bin/python bench/trigger_floor.py              # 10,000 writes, 5 interleaved rounds
    .venv/bin/python bench/trigger_floor.py -n 20000 --repeat 7

``events_bench.py`` compares pymotia with one subscribed state trigger against pymotia without one. Part of
that gap is work any durable, at-least-once trigger on SQLite must do, whoever writes it: the change must be
recorded in the write's own commit (else a crash between the two loses it), and a handler must claim it
under a lease and remove it when done. This script does exactly that work with raw ``sqlite3``, no
framework, on uvloop, in the cheapest form we know, and measures it by CPU time of the process:

* **plain**: upsert a changing value (one autocommit statement; ``--tasks`` > 1: ``BEGIN``, the batch's
  upserts by ``executemany``, ``COMMIT``, as a group commit of that many writers);
* **+ event row**: the same statements, the table carrying a SQLite trigger that inserts the change (key,
  old value, new value) into an event table with no index but its rowid, inside the same statement: no
  extra statement, no read, no JSON; one more B-tree page per commit is all it adds;
* **handle**: claim the events ``--claim`` at a time (``UPDATE ... RETURNING`` taking a lease), build each
  handler's input (a dict of the row, the values decoded), await an ``async def`` handler that counts,
  delete the handled rows, commit.

Then, with pymotia's own plain write measured in the same run (``StateManager.set`` on SQLite, events off,
the same concurrency), the most each trigger target could reach **if pymotia's trigger path added nothing to
the raw work** (its plain write kept as it is):

* write rate with a trigger, handlers elsewhere: ``P / (P + event_row_cost)``;
* write rate with a trigger handled in the same process (``events_bench``'s *outbox + trigger*), and end to end
  (every event handled) over plain writes: ``P / (P + event_row_cost + handle)``.

where ``P`` is pymotia's CPU µs per plain write. Rounds alternate the variants on fresh files; figures are
medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from motia import StateManager

SCOPE = "sessions"
_counter = itertools.count()
_files = itertools.count()

_UPSERT = (
    "INSERT INTO state (scope, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value"
)
_SCHEMA = (
    "CREATE TABLE state (scope TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (scope, key))"
    " WITHOUT ROWID",
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, scope TEXT NOT NULL, key TEXT NOT NULL, old BLOB, new BLOB,"
    " lease_until REAL NOT NULL DEFAULT 0)",
)
_TRIGGERS = (
    "CREATE TRIGGER state_created AFTER INSERT ON state BEGIN"
    " INSERT INTO events (scope, key, old, new) VALUES (new.scope, new.key, NULL, new.value); END",
    "CREATE TRIGGER state_updated AFTER UPDATE ON state BEGIN"
    " INSERT INTO events (scope, key, old, new) VALUES (new.scope, new.key, old.value, new.value); END",
)
_CLAIM = (
    "UPDATE events SET lease_until = ?"
    " WHERE seq IN (SELECT seq FROM events WHERE lease_until <= ? ORDER BY seq LIMIT ?)"
    " RETURNING seq, scope, key, old, new"
)


def next_value() -> dict[str, object]:
    return {"userId": "42", "expiresAt": next(_counter), "data": {}}


def open_file(workdir: Path, events: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(workdir / f"floor-{next(_files)}.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    for statement in _SCHEMA + (_TRIGGERS if events else ()):
        connection.execute(statement)
    return connection


def raw_writes(connection: sqlite3.Connection, keys: list[str], tasks: int) -> None:
    if tasks == 1:
        for key in keys:
            connection.execute(_UPSERT, (SCOPE, key, orjson.dumps(next_value())))
        return
    for start in range(0, len(keys), tasks):
        connection.execute("BEGIN IMMEDIATE")
        batch = keys[start : start + tasks]
        connection.executemany(_UPSERT, [(SCOPE, key, orjson.dumps(next_value())) for key in batch])
        connection.execute("COMMIT")


async def handle_all(connection: sqlite3.Connection, claim: int) -> int:
    handled = 0

    async def handler(event: dict[str, object]) -> None:
        nonlocal handled
        handled += 1

    while True:
        now = time.time()
        claimed = connection.execute(_CLAIM, (now + 30, now, claim)).fetchall()  # autocommit: one statement
        if not claimed:
            return handled
        for _, scope, key, old, new in claimed:
            await handler(
                {
                    "type": "state",
                    "group_id": scope,
                    "item_id": key,
                    "old_value": None if old is None else orjson.loads(old),
                    "new_value": orjson.loads(new),
                }
            )
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("DELETE FROM events WHERE seq = ?", [(row[0],) for row in claimed])
        connection.execute("COMMIT")


async def pymotia_writes(state: StateManager, keys: list[str], tasks: int) -> None:
    async def writer(chunk: list[str]) -> None:
        for key in chunk:
            await state.set(SCOPE, key, next_value())

    await asyncio.gather(*(writer(keys[i::tasks]) for i in range(tasks)))


async def run(args: argparse.Namespace) -> None:
    keys = [f"k{i}" for i in range(args.n)]
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds / args.n * 1e6)

    with tempfile.TemporaryDirectory(prefix="motia-floor-") as tmp:
        workdir = Path(tmp)
        for _ in range(args.repeat):
            for tasks in (1, args.tasks):
                plain = open_file(workdir, events=False)
                raw_writes(plain, keys, tasks)  # every key exists: the timed writes are updates, as in events_bench
                gc.collect()
                start = time.process_time()
                raw_writes(plain, keys, tasks)
                add(f"plain|{tasks}", time.process_time() - start)
                plain.close()

                evented = open_file(workdir, events=True)
                raw_writes(evented, keys, tasks)
                evented.execute("DELETE FROM events")
                gc.collect()
                start = time.process_time()
                raw_writes(evented, keys, tasks)
                add(f"event row|{tasks}", time.process_time() - start)
                gc.collect()
                start = time.process_time()
                handled = await handle_all(evented, args.claim)
                add(f"handle|{tasks}", time.process_time() - start)
                if handled != args.n:
                    raise RuntimeError(f"handled {handled} events of {args.n}")
                evented.close()

                async with StateManager.from_url(f"sqlite:///{workdir / f'pymotia-{next(_files)}.db'}") as state:
                    await pymotia_writes(state, keys, tasks)
                    gc.collect()
                    start = time.process_time()
                    await pymotia_writes(state, keys, tasks)
                    add(f"pymotia|{tasks}", time.process_time() - start)

    m = {name: statistics.median(values) for name, values in samples.items()}
    print(f"\nthe floor of a durable state trigger on SQLite: raw sqlite3, uvloop, n={args.n:,},", end=" ")
    print(f"median of {args.repeat},")
    print(f"events claimed {args.claim} at a time; CPU µs of the process per write (event)")
    header = [
        "writers",
        "raw plain",
        "raw + event row",
        "raw handle",
        "pymotia plain P",
        "ceiling: writes, handlers elsewhere",
        "ceiling: writes + handling / end to end",
    ]
    rows = []
    for tasks in (1, args.tasks):
        raw, event, handle, pym = (m[f"{name}|{tasks}"] for name in ("plain", "event row", "handle", "pymotia"))
        extra = event - raw
        rows.append(
            [
                "1 (autocommit)" if tasks == 1 else f"{tasks} (group commit)",
                f"{raw:.1f}",
                f"{event:.1f} (+{extra:.1f})",
                f"{handle:.1f}",
                f"{pym:.1f}",
                f"{pym / (pym + extra):.2f}x",
                f"{pym / (pym + extra + handle):.2f}x",
            ]
        )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="writes (events) per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--tasks", type=int, default=200, help="concurrent writers (a group commit of that many)")
    parser.add_argument("--claim", type=int, default=100, help="events claimed at a time")
    args = parser.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
