"""The SQL of a state delivery's life on SQLite, alone: what pymotia's own statements cost, and the ceiling they
leave for issue 15's end-to-end target.

Run from the repository root:

    .venv/bin/python bench/delivery_sql.py                 # 10,000 events, 5 interleaved rounds
    .venv/bin/python bench/delivery_sql.py -n 20000 --repeat 7
    PYTHONPATH=<other checkout>/src .venv/bin/python bench/delivery_sql.py   # the same SQL of another version

Instructions per event of each part (stage 2 less 1: the group write with deliveries; 3 less 2: claim and
complete), which load does not move:

    for stage in 1 2 3; do valgrind --tool=callgrind --toggle-collect=_pysqlite_query_execute \\
        --callgrind-out-file=/dev/null .venv/bin/python bench/delivery_sql.py -n 2000 --stage $stage \\
        2>&1 | grep Collected; done

``trigger_floor.py`` measures the least work any durable trigger on SQLite must do (an unindexed event table).
This script runs **pymotia's own statements on pymotia's own schema** (made by the package's
``create_schema``), with raw ``sqlite3`` and no framework Python around them: the statements and the write
functions are imported from the package, so another checkout's ``PYTHONPATH`` measures its SQL with the same
script. Each part runs in its own ``BEGIN IMMEDIATE`` … ``COMMIT``, as the writer runs it, and is timed by
CPU time of the process (``time.process_time``), which other load on the machine moves far less than the
wall clock:

* **group write, plain**: a group commit of ``--tasks`` sets as the writer makes it (one ``SELECT … IN`` of
  the keys, the upserts by one ``executemany``);
* **group write + deliveries**: the same with the change events' deliveries made in the transaction as
  ``outbox._record_direct`` makes them (the mode check, the seq counter, the deliveries' insert by one
  ``executemany``); the payloads are built beforehand, untimed (that is Python, not SQL);
* **claim**: ``delivery._write_claim`` of ``--claim`` deliveries (the worker's default concurrency), one
  step, while the previous claim's deliveries are still leased (the worker claims again as soon as a
  handler returns, before its completion is written);
* **complete**: ``delivery._write_complete_many`` of the previous claim's deliveries (a flush of that size).

With pymotia's own plain write measured in the same run (``StateManager.set`` by ``--tasks`` writers, events
off, uvloop), the end-to-end ratio (events handled per second over plain writes per second) this SQL alone
allows, if every line of Python around it cost nothing: ``P / (P + deliveries + claim + complete)``, where
``deliveries`` is the group write with deliveries less the plain one, and ``P`` pymotia's CPU µs per plain
write. Rounds alternate the parts on fresh files; figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import os
import socket
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import orjson

from motia import StateManager
from motia.state.backends._events import state_deliveries
from motia.state.backends.sqlite import connection as sqlite_connection
from motia.state.backends.sqlite import delivery, outbox
from motia.state.backends.sqlite.schema import create_schema
from motia.state.backends.sqlite.transaction import _UPSERT
from motia.state.backends.types import NewDelivery, Subscription

SCOPE = "sessions"
STEP = "on-session"
SUBSCRIPTIONS = [Subscription(STEP, SCOPE, None)]
_PREFETCH = "SELECT key, value, version, expires_at FROM motia_state WHERE scope = ? AND key IN ({marks})"
_counter = itertools.count()
_files = itertools.count()


def next_value() -> bytes:
    return orjson.dumps({"userId": "42", "expiresAt": next(_counter), "data": {}})


def open_file(workdir: Path) -> sqlite3.Connection:
    path = workdir / f"sql-{next(_files)}.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")  # pymotia checkpoints off the writer: untimed here
    connection.execute("PRAGMA cache_size=-16000")  # as pymotia's connections
    secure_delete = getattr(sqlite_connection, "SECURE_DELETE", None)  # as pymotia's connections, if it sets it
    if secure_delete is not None:
        connection.execute(f"PRAGMA secure_delete={secure_delete}")

    def rollback(failed: sqlite3.Connection) -> None:
        failed.execute("ROLLBACK")

    create_schema(connection, path, rollback)
    connection.executemany(
        "INSERT INTO motia_subscriptions (step, scope, key) VALUES (?, ?, ?)",
        [(s.step, s.scope or "", s.key or "") for s in SUBSCRIPTIONS],
    )
    outbox.set_mode(connection, True)
    return connection


def checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def group_writes(connection: sqlite3.Connection, keys: list[str], tasks: int, deliveries: bool) -> float:
    """CPU seconds of writing every key once, ``tasks`` keys per transaction (with their deliveries or not)."""
    version = next(_counter)
    batches = []
    for first_key in range(0, len(keys), tasks):
        batch = keys[first_key : first_key + tasks]
        upserts = [(SCOPE, key, next_value(), version, None) for key in batch]
        batches.append((batch, upserts))
    marks = {len(batch): _PREFETCH.format(marks=",".join("?" * len(batch))) for batch, _ in batches}
    total = 0.0
    for batch, upserts in batches:
        made: list[NewDelivery] = []
        if deliveries:  # the payloads are Python, made untimed, with the seqs the counter is about to hand out
            first = int(connection.execute("SELECT value FROM motia_meta WHERE name = 'event_seq'").fetchone()[0]) + 1
            made_at = time.time()
            for seq, (_, key, value, _, _) in enumerate(upserts, first):
                made += state_deliveries(SUBSCRIPTIONS, seq, "updated", SCOPE, key, value, value, version, made_at)
        gc.disable()
        start = time.process_time()
        now = time.time()
        execute = connection.execute
        execute("BEGIN IMMEDIATE")
        execute(marks[len(batch)], (SCOPE, *batch)).fetchall()
        connection.executemany(_UPSERT, upserts)
        if deliveries:
            number, waiting = execute(outbox.MODE).fetchone()
            if number <= 0 or waiting:
                raise RuntimeError("the file is not in direct mode")
            row = execute(outbox._NEXT_SEQS, (len(batch),)).fetchone()
            connection.executemany(outbox._INSERT_DELIVERY, outbox.delivery_rows(made, now))
        execute("COMMIT")
        total += time.process_time() - start
        gc.enable()
        if deliveries and row[0] - len(batch) + 1 != first:
            raise RuntimeError("the seqs differ from the counter's")
    return total


def claim_and_complete(connection: sqlite3.Connection, claim: int, together: bool) -> tuple[float, float, int]:
    """CPU seconds of claiming every delivery ``claim`` at a time and of completing them, and how many.

    ``together``: what one transaction for a flush's completions and the next claim costs (the worker does that
    since session 27, ``_write_complete_and_claim``; spelled out here so that older checkouts measure it too):
    the completions first (so their keys' next deliveries are claimable), then the
    claim, one commit; the claim's figure is then the whole transaction's and the completion's zero.
    """
    owner = f"{socket.gethostname()}:{os.getpid()}:0123abcd"  # the delivery worker's form
    claim_cpu = complete_cpu = 0.0
    handled = 0
    previous: list[str] = []
    execute = connection.execute
    gc.disable()
    try:
        while True:
            start = time.process_time()
            if together:
                tx = SimpleNamespace(connection=connection, now=time.time(), notify=False)
                execute("BEGIN IMMEDIATE")
                done = delivery._write_complete_many(tx, previous, owner) if previous else set()  # type: ignore[arg-type]
                claimed = delivery._write_claim(tx, (STEP,), owner, claim, 30.0)  # type: ignore[arg-type]
                execute("COMMIT")
                middle = end = time.process_time()
            else:
                tx = SimpleNamespace(connection=connection, now=time.time(), notify=False)
                execute("BEGIN IMMEDIATE")
                claimed = delivery._write_claim(tx, (STEP,), owner, claim, 30.0)  # type: ignore[arg-type]
                execute("COMMIT")
                middle = time.process_time()
                done = set()
                if previous:
                    tx = SimpleNamespace(connection=connection, now=time.time(), notify=False)
                    execute("BEGIN IMMEDIATE")
                    done = delivery._write_complete_many(tx, previous, owner)  # type: ignore[arg-type]
                    execute("COMMIT")
                end = time.process_time()
            if len(done) != len(previous):
                raise RuntimeError(f"completed {len(done)} of {len(previous)}")
            claim_cpu += middle - start
            complete_cpu += end - middle
            handled += len(previous)
            if not claimed and not previous:
                return claim_cpu, complete_cpu, handled
            previous = [d.id for d in claimed]
    finally:
        gc.enable()


async def pymotia_writes(state: StateManager, keys: list[str], tasks: int) -> None:
    async def writer(chunk: list[str]) -> None:
        for key in chunk:
            await state.set(SCOPE, key, {"userId": "42", "expiresAt": next(_counter), "data": {}})

    await asyncio.gather(*(writer(keys[i::tasks]) for i in range(tasks)))


async def run(args: argparse.Namespace) -> None:
    keys = [f"k{i}" for i in range(args.n)]
    samples: dict[str, list[float]] = {}

    def add(name: str, seconds: float) -> None:
        samples.setdefault(name, []).append(seconds / args.n * 1e6)

    with tempfile.TemporaryDirectory(prefix="motia-sql-") as tmp:
        workdir = Path(tmp)
        for _ in range(args.repeat):
            plain = open_file(workdir)
            group_writes(plain, keys, args.tasks, deliveries=False)  # the timed writes are updates
            checkpoint(plain)
            add("write", group_writes(plain, keys, args.tasks, deliveries=False))
            plain.close()

            evented = open_file(workdir)
            group_writes(evented, keys, args.tasks, deliveries=False)
            checkpoint(evented)
            add("write+deliveries", group_writes(evented, keys, args.tasks, deliveries=True))
            checkpoint(evented)
            claim_cpu, complete_cpu, handled = claim_and_complete(evented, args.claim, together=False)
            if handled != args.n:
                raise RuntimeError(f"handled {handled} deliveries of {args.n}")
            add("claim", claim_cpu)
            add("complete", complete_cpu)
            evented.close()

            if args.together:  # the same deliveries, claimed and completed in one transaction per flush
                evented = open_file(workdir)
                group_writes(evented, keys, args.tasks, deliveries=False)
                group_writes(evented, keys, args.tasks, deliveries=True)
                checkpoint(evented)
                claim_cpu, _, handled = claim_and_complete(evented, args.claim, together=True)
                if handled != args.n:
                    raise RuntimeError(f"handled {handled} deliveries of {args.n}")
                add("together", claim_cpu)
                evented.close()

            async with StateManager.from_url(f"sqlite:///{workdir / f'pymotia-{next(_files)}.db'}") as state:
                await pymotia_writes(state, keys, args.tasks)
                gc.collect()
                start = time.process_time()
                await pymotia_writes(state, keys, args.tasks)
                add("pymotia", time.process_time() - start)

    m = {name: statistics.median(values) for name, values in samples.items()}
    extra = m["write+deliveries"] - m["write"]
    sql = extra + m["claim"] + m["complete"]
    print(f"\npymotia's delivery SQL alone on its own schema: raw sqlite3, n={args.n:,},", end=" ")
    print(f"group commits of {args.tasks},")
    print(f"claims of {args.claim}; median of {args.repeat}; CPU µs of the process per event")
    rows = [
        ("group write, plain (SQL)", m["write"]),
        ("group write + deliveries (SQL)", m["write+deliveries"]),
        ("  the deliveries' share", extra),
        ("claim", m["claim"]),
        ("complete", m["complete"]),
        ("delivery SQL per event (share + claim + complete)", sql),
        ("pymotia plain set P (StateManager, events off)", m["pymotia"]),
    ]
    if args.together:
        rows.append(("what if: the completions and the next claim in one transaction", m["together"]))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name.ljust(width)}  {value:7.2f}")
    pym = m["pymotia"]
    print(f"ceiling of end to end / plain writes, this SQL and nothing else: P / (P + SQL) = {pym / (pym + sql):.2f}x")
    if args.together:
        print(f"  the same with claim and completion in one transaction: {pym / (pym + extra + m['together']):.2f}x")


def stages(args: argparse.Namespace) -> None:
    """One file taken to ``--stage`` (1: the keys written; 2: then written again with their deliveries; 3: then
    claimed and completed), for instruction counts: run under callgrind counting only the sqlite3 module's
    statements, the difference of two stages is the SQL of one part (binding and SQLite, nothing else)."""
    with tempfile.TemporaryDirectory(prefix="motia-sql-") as tmp:
        connection = open_file(Path(tmp))
        keys = [f"k{i}" for i in range(args.n)]
        group_writes(connection, keys, args.tasks, deliveries=False)
        checkpoint(connection)
        if args.stage >= 2:
            group_writes(connection, keys, args.tasks, deliveries=True)
            checkpoint(connection)
        if args.stage >= 3 and claim_and_complete(connection, args.claim, together=False)[2] != args.n:
            raise RuntimeError("not every delivery was handled")
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="events per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds (median reported)")
    parser.add_argument("--tasks", type=int, default=200, help="sets per group commit (concurrent writers)")
    parser.add_argument("--claim", type=int, default=16, help="deliveries per claim (the worker's concurrency)")
    parser.add_argument(
        "--together", action="store_true", help="also: the completions and the next claim in one transaction"
    )
    parser.add_argument("--stage", type=int, choices=(1, 2, 3), help="run one file to this stage only (callgrind)")
    args = parser.parse_args()
    if args.stage is not None:
        stages(args)
        return
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
