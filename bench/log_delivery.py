"""A log-shaped delivery of state events, priced by a working prototype beside today's path (issue 15, session 29).

Today every state event a subscribed step must handle becomes a delivery row (inserted into four B-trees, leased
by a claim, deleted by a completion), and that table alone caps the end-to-end ratio near 0.35-0.38x of plain
writes (``bench/delivery_sql.py --together``). The alternative priced here: the outbox (``motia_state_events``,
one row per change, written in the write's own statement or group) *is* the delivery log; a subscription keeps
a cursor (step, last seq handled, owner, lease); the consumer reads the next range after its cursor, runs each
key's events in order (different keys concurrently, up to the worker's default concurrency), and then moves the
cursor with one write. Nothing of this is in ``src/``: it is built here, on pymotia's real write path and real
handler path, to learn what such a design would reach before anyone builds it into four backends.

Run from the repository root:

    PYTHONPATH=src:bench .venv/bin/python bench/log_delivery.py                 # n=10,000, 3 interleaved rounds
    PYTHONPATH=src:bench .venv/bin/python bench/log_delivery.py --repeat 5 --batch 200
    PYTHONPATH=src:bench .venv/bin/python bench/log_delivery.py --cursor writer # cursor moved in the writers' group
    PYTHONPATH=src:bench .venv/bin/python bench/log_delivery.py --keys 1000     # keys written 10 times: per-key order

Variants, each from the first write to the last handler's return, ``n`` writes by ``--tasks`` (200) writers
through pymotia's ``StateManager`` on a fresh SQLite file, uvloop, one process:

* ``today``: a started ``MotiaApp`` with one counting ``state(...)`` trigger (``events_bench.py``'s end-to-end
  row, ``delivery_cpu.py --end-to-end``): deliveries made in the writes' groups, claimed, completed.
* ``log``: events on, **no subscription registered** (an app with ``delivery=False``), so each change is one
  outbox row in its write's statement or group and nothing else; the prototype's consumer reads ranges of
  ``motia_state_events`` after its cursor through a connection of its own (WAL: a reader never blocks the
  writer, nor waits for it) and runs **pymotia's real handler path** for each event: the input built as the
  worker's ``_route`` builds it (``state_input(fields)``, the console feed's ``FeedOnce``), ``app.context`` and
  ``app.invoke`` as ``_run`` calls them, one ``asyncio.Task`` per handler made as ``_start`` makes it.
* ``bare``: the same consumer, the handler a bare ``await handler(fields)`` (the values decoded, no validation,
  no ctx, no feed): the SQL and loop cost of the log alone.
* ``outbox``: the same writes as ``log`` and ``bare`` (events on, no subscription) with nobody consuming: what the
  outbox rows cost the writes, so that ``bare - outbox`` is the consumer's own cost.
* ``plain``: the same writes with events off: the denominator of every ratio.

The consumer's reads run inline on the loop (``--reader inline``: a short ``SELECT`` in autocommit, its read
transaction over when ``fetchall`` returns; its time on the loop is printed) or on a thread of their own
(``--reader thread``). The cursor moves after each range's handlers returned: on the consumer's own connection
(``--cursor own``: one autocommit ``UPDATE``, or ``BEGIN IMMEDIATE`` with the outbox trim below the cursor every
:data:`TRIM_AFTER` seqs, run on the loop thread, where the writer also commits, so the two never wait for each
other) or through the writer (``--cursor writer``: a call in the 200 writers' group commit; it takes such a
group off its fast path for sets, which is measured). Every variant asserts that each event was handled exactly
once and, per key, in version order.

``--callgrind --variant NAME`` (under ``valgrind --tool=callgrind --instr-atstart=no``) counts the measured span
of one round only, as ``delivery_cpu.py --callgrind`` does; two ``n`` give instructions per event:

    for v in today log bare plain; do for n in 300 2000; do PYTHONPATH=src:bench valgrind --tool=callgrind \\
        --instr-atstart=no --callgrind-out-file=/dev/null .venv/bin/python bench/log_delivery.py --variant $v \\
        -n $n --callgrind 2>&1 | grep Collected; done; done   # (N_2000 - N_300) / 1700 per event
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events_bench import SCOPE, fresh_url, next_value
from motia import StateManager, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.feed_once import FeedOnce
from motia.runtime.state_triggers import state_input, state_triggers, wait_for
from motia.state import values
from motia.state.backends.sqlite import SQLiteBackend
from motia.steps.definition import Step

STEP = "count"
VARIANTS = ("today", "log", "bare", "outbox", "plain")
#: Handlers at once: the worker's default (``MOTIA_DELIVERY_CONCURRENCY``).
CONCURRENCY = DeliveryOptions().concurrency
LEASE = 30.0
#: How long an idle consumer waits for a commit before it reads again (the worker's poll interval).
POLL = DeliveryOptions().poll_interval
#: The outbox rows below the cursor are deleted once the cursor is this many seqs past the last trim (the row at
#: the cursor stays: new rows are numbered after the newest one, so a seq is never handed out twice).
TRIM_AFTER = 1024

_PAGE = (
    "SELECT seq, event_type, scope, key, old_value, new_value, version, timestamp, trace FROM motia_state_events"
    " WHERE seq > ? ORDER BY seq LIMIT ?"
)
_CURSORS = (
    "CREATE TABLE IF NOT EXISTS log_cursors (step TEXT PRIMARY KEY, seq INTEGER NOT NULL, owner TEXT NOT NULL,"
    " lease_until REAL NOT NULL) WITHOUT ROWID"
)
_MOVE = "UPDATE log_cursors SET seq = ?, lease_until = ? WHERE step = ? AND owner = ?"
_TRIM = "DELETE FROM motia_state_events WHERE seq < ?"


def sqlite_file(state_manager: StateManager) -> Path:
    """The file of ``state_manager``'s store (the prototype reads it on a connection of its own)."""
    backend = state_manager.backend
    if not isinstance(backend, SQLiteBackend):
        raise TypeError(f"the prototype runs on SQLite, not {type(backend).__name__}")
    return backend.path


#: The command line's settings (``-n``, ``--keys``, ``--tasks``, ``--batch``, ``--cursor``, ``--reader``,
#: ``--handlers``, ``--callgrind``) and ``workdir``, the directory of the round's files.
Options = argparse.Namespace


def workload(n: int, keys: int) -> list[str]:
    """The keys of ``n`` writes: ``events_bench.py``'s (each key once) unless ``keys`` (0: ``n``) < ``n``."""
    return [f"k{i % (keys or n)}" for i in range(n)]


async def write_all(state_manager: StateManager, keys: list[str], tasks: int) -> None:
    """``events_bench.time_writes``' writers: ``tasks`` tasks, each setting its share of ``keys`` in turn."""

    async def writer(chunk: list[str]) -> None:
        for key in chunk:
            await state_manager.set(SCOPE, key, next_value())

    await asyncio.gather(*(writer(keys[i::tasks]) for i in range(tasks)))


class Seen:
    """What the handlers saw, ``(key, version)`` per event, and an event set once ``expected`` arrived."""

    def __init__(self, expected: int) -> None:
        self.log: list[tuple[str, int]] = []
        self.expected = expected
        self.done = asyncio.Event()

    def add(self, key: str, version: int) -> None:
        log = self.log
        log.append((key, version))
        if len(log) >= self.expected:
            self.done.set()

    def check(self, keys: list[str], variant: str) -> None:
        """Each event handled exactly once, and each key's in order: versions 1, 2, ... as written."""
        written: dict[str, int] = {}
        for key in keys:
            written[key] = written.get(key, 0) + 1
        handled: dict[str, list[int]] = {}
        for key, version in self.log:
            handled.setdefault(key, []).append(version)
        if len(self.log) != len(keys):
            raise AssertionError(f"{variant}: {len(self.log)} events handled for {len(keys)} writes")
        for key, count in written.items():
            if handled.get(key) != list(range(1, count + 1)):
                raise AssertionError(f"{variant}: key {key!r} handled as versions {handled.get(key)}, not 1..{count}")


def counting_step(seen: Seen) -> Step:
    async def count(input: Any, ctx: Any) -> None:
        seen.add(input.item_id, input.version)

    return step({"name": STEP, "triggers": [state(scope=SCOPE)]}, count)


@dataclass
class Measured:
    seconds: float = 0.0
    cpu: float = 0.0
    details: dict[str, float] = field(default_factory=dict)


@asynccontextmanager
async def measured(callgrind: bool) -> AsyncIterator[Measured]:
    """Time the block (wall clock and CPU of the process); under callgrind, count its instructions only."""
    gc.collect()
    if callgrind:
        # Valgrind answers between the client's instructions: start the command, let the loop run meanwhile.
        subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
        await asyncio.sleep(1)
    span = Measured()
    cpu, start = time.process_time(), time.perf_counter()
    yield span
    span.seconds, span.cpu = time.perf_counter() - start, time.process_time() - cpu
    if callgrind:
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


# -- the prototype ---------------------------------------------------------------------------------------------


#: One event of a range, routed: ``(delivery_id, input, trigger fields, triggers)`` for the real handler path,
#: ``(delivery_id, fields)`` for the bare one.
Routed = tuple[Any, ...]


class LogConsumer:
    """One subscription's consumer of the outbox as a log: a cursor row of its own, ranges read after it, each
    key's events of a range run in order (one task per handler, at most :data:`CONCURRENCY` at once), then the
    cursor moved past the range. ``real``: pymotia's handler path (input, ctx, invoke); else ``bare``."""

    def __init__(self, app: MotiaApp, seen: Seen, real: bool, options: Options) -> None:
        self.app = app
        #: ``inline``: each key's handlers awaited in turn by the range itself, no task per handler (pricing only).
        self.inline = options.handlers == "inline"
        self.seen = seen
        self.real = real
        self.batch = options.batch
        self.cursor_mode = options.cursor
        self.backend: Any = app.state.backend
        self.step = app.steps[0]
        self.triggers = state_triggers(self.step)
        self.feed = FeedOnce(app)
        self.owner = f"log:{os.getpid()}"
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.wake = asyncio.Event()
        self.connection = sqlite3.connect(sqlite_file(app.state), isolation_level=None, check_same_thread=False)
        for pragma in ("busy_timeout=10000", "synchronous=NORMAL", "wal_autocheckpoint=0", "secure_delete=FAST"):
            self.connection.execute(f"PRAGMA {pragma}")  # the WAL is pymotia's: its writer checkpoints it
        self.connection.execute(_CURSORS)
        self.connection.execute(
            "INSERT OR REPLACE INTO log_cursors VALUES (?, 0, ?, ?)", (STEP, self.owner, time.time() + LEASE)
        )
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="log-reader") if options.reader == "thread" else None
        self.cursor = 0
        self.trimmed = 0
        self.failures: list[BaseException] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._chains: Any = iter(())
        self._running = 0
        self._range_done: asyncio.Future[None] | None = None
        # what the span cost, beside the handlers
        self.ranges = 0
        #: Events that waited in a range for an earlier event of their key (per-key order at work).
        self.chained = 0
        self.read_seconds = 0.0
        self.cursor_seconds = 0.0
        self.backend.add_listener(self._on_commit)

    def close(self) -> None:
        self.backend.remove_listener(self._on_commit)
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        self.connection.close()

    def _on_commit(self) -> None:
        """Store listener (any thread): a commit recorded events, read again."""
        if threading.get_ident() == self.loop_thread:
            self.wake.set()
        else:
            self.loop.call_soon_threadsafe(self.wake.set)

    def _read(self, after: int) -> list[Any]:
        return self.connection.execute(_PAGE, (after, self.batch)).fetchall()

    async def run(self, expected: int) -> None:
        """Handle ranges until ``expected`` events were handled."""
        handled = 0
        while handled < expected:
            self.wake.clear()  # before the read: a commit after it sets it again, and the wait returns at once
            if self.executor is None:
                started = time.perf_counter()
                rows = self._read(self.cursor)
                self.read_seconds += time.perf_counter() - started
            else:
                rows = await self.loop.run_in_executor(self.executor, self._read, self.cursor)
            if not rows:
                await wait_for(self.wake, POLL)
                continue
            self.ranges += 1
            await self._handle(rows)
            handled += len(rows)
            await self._move(rows[-1][0])
        if self.failures:
            raise AssertionError(f"{len(self.failures)} handlers failed: {self.failures[0]!r}")

    # -- one range ---------------------------------------------------------------------------------------------

    async def _handle(self, rows: list[Any]) -> None:
        """Route every event of the range, then run each key's events in order, keys side by side."""
        chains: dict[tuple[str, str], list[Routed]] = {}
        route = self._route if self.real else self._fields
        for row in rows:
            chain = chains.get((row[2], row[3]))
            if chain is None:
                chain = chains[(row[2], row[3])] = []
            chain.append(route(row))
        if self.real:
            self.feed.flush()  # the range's events in the console feed before any handler runs, as a claim's are
        if self.inline:  # what a task per handler costs: the same handlers without one (keys one after another)
            for chain in chains.values():
                for index in range(len(chain)):
                    await (self._run(chain, index) if self.real else self._bare(chain, index))
            return
        self._chains = iter(chains.values())
        self._running = 0
        done = self._range_done = self.loop.create_future()
        for _ in range(CONCURRENCY):
            chain = next(self._chains, None)
            if chain is None:
                break
            self._start(chain, 0)
        await done

    def _fields(self, row: Sequence[Any]) -> Routed:
        """The fields of today's state payload, the values decoded (what ``_route`` decodes from the payload)."""
        seq, event_type, scope, key, old, new, version, timestamp, trace = row
        fields: dict[str, Any] = {
            "type": "state",
            "event_type": event_type,
            "group_id": scope,
            "item_id": key,
            "old_value": None if old is None else values.decode(old),
            "new_value": None if new is None else values.decode(new),
            "version": version,
            "timestamp": timestamp,
            "seq": seq,
        }
        if trace:
            fields["traceparent"] = trace
        return (f"state:{seq}:{STEP}", fields)

    def _route(self, row: Sequence[Any]) -> Routed:
        """As ``DeliveryWorker._route`` makes a state delivery's input, ``ctx.trigger`` fields and triggers."""
        delivery_id, fields = self._fields(row)
        event = state_input(fields)
        scope, key = event.group_id, event.item_id
        candidates = self.triggers
        found: Sequence[Any] = candidates
        for t in candidates:
            if not ((t.scope is None or t.scope == scope) and (t.key is None or t.key == key)):
                found = [t for t in candidates if (t.scope in (None, scope)) and (t.key in (None, key))]
                break
        if not found:
            raise AssertionError(f"no state trigger of {STEP!r} matches {scope!r}/{key!r}")
        self.feed.waiting.append((event.seq, fields))
        info = ("state", None, None, None, None, scope, key, None, None, None, delivery_id, 1)
        return (delivery_id, event, info, found)

    def _start(self, chain: list[Routed], index: int) -> None:
        """Run ``chain[index]`` in a task of its own, made as the worker's ``_start`` makes it."""
        self._running += 1
        delivery_id = chain[index][0]
        coro = self._run(chain, index) if self.real else self._bare(chain, index)
        loop = self.loop
        name = f"motia-delivery:{delivery_id}"
        if loop.get_task_factory() is None:
            task = asyncio.Task(coro, loop=loop, name=name)
        else:
            task = loop.create_task(coro, name=name)
        self.tasks[delivery_id] = task

    def _finished(self, chain: list[Routed], index: int) -> None:
        """A handler returned: its key's next event, else the next key's first, else one slot less."""
        if self.inline:
            return
        self.tasks.pop(chain[index][0], None)
        self._running -= 1
        if index + 1 < len(chain):
            self.chained += 1
            self._start(chain, index + 1)
            return
        following = next(self._chains, None)
        if following is not None:
            self._start(following, 0)
        elif not self._running and self._range_done is not None:
            self._range_done.set_result(None)

    async def _run(self, chain: list[Routed], index: int) -> None:
        """``DeliveryWorker._run`` without its failure handling (a failure here fails the round) or completion."""
        delivery_id, event, info, triggers = chain[index]
        app, step_ = self.app, self.step
        try:
            ctx = app.context(step_, info, None, delivery_id=delivery_id)
            for trigger in triggers:
                if trigger.condition is None or await app.condition_passes(trigger, event, ctx):
                    await app.invoke(step_, event, ctx)
                    break
        except Exception as exc:  # no retries in the prototype: recorded, and the round fails
            self.failures.append(exc)
        finally:
            self._finished(chain, index)

    async def _bare(self, chain: list[Routed], index: int) -> None:
        fields = chain[index][1]
        try:
            await self.handler(fields)
        except Exception as exc:
            self.failures.append(exc)
        finally:
            self._finished(chain, index)

    async def handler(self, fields: dict[str, Any]) -> None:
        self.seen.add(fields["item_id"], fields["version"])

    # -- the cursor --------------------------------------------------------------------------------------------

    async def _move(self, seq: int) -> None:
        """Move the cursor to ``seq`` (and renew the lease); every :data:`TRIM_AFTER` seqs, trim the outbox."""
        trim = seq - self.trimmed >= TRIM_AFTER
        if trim:
            self.trimmed = seq
        self.cursor = seq
        lease_until = time.time() + LEASE
        if self.cursor_mode == "writer":
            await self.backend._write(_move_in_group, seq, lease_until, self.owner, trim)
            return
        started = time.perf_counter()
        connection = self.connection
        if trim:
            connection.execute("BEGIN IMMEDIATE")
            try:
                _move_cursor(connection, seq, lease_until, self.owner, trim)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        else:
            _move_cursor(connection, seq, lease_until, self.owner, trim)
        self.cursor_seconds += time.perf_counter() - started

    def check(self, n: int) -> None:
        """The cursor row ended at the last seq read, under this owner; nobody registered a subscription."""
        row = self.connection.execute("SELECT seq, owner FROM log_cursors WHERE step = ?", (STEP,)).fetchone()
        if row != (self.cursor, self.owner):
            raise AssertionError(f"cursor row {row}, expected ({self.cursor}, {self.owner!r})")
        if self.connection.execute("SELECT count(*) FROM motia_subscriptions").fetchone()[0]:
            raise AssertionError("a subscription was registered: the writes made deliveries")
        if self.connection.execute("SELECT count(*) FROM motia_deliveries").fetchone()[0]:
            raise AssertionError("deliveries were made")
        if self.connection.execute(_PAGE, (self.cursor, 1)).fetchone() is not None:
            raise AssertionError("events wait after the cursor")


def _move_cursor(connection: sqlite3.Connection, seq: int, lease_until: float, owner: str, trim: bool) -> None:
    if connection.execute(_MOVE, (seq, lease_until, STEP, owner)).rowcount != 1:
        raise AssertionError("the cursor's lease was lost")
    if trim:
        connection.execute(_TRIM, (seq,))


def _move_in_group(tx: Any, seq: int, lease_until: float, owner: str, trim: bool) -> None:
    """The cursor move as a call of the writer's group commit (``function(transaction, *args)``)."""
    _move_cursor(tx.connection, seq, lease_until, owner, trim)


# -- the variants ----------------------------------------------------------------------------------------------


async def today(options: Options) -> Measured:
    keys = workload(options.n, options.keys)
    seen = Seen(len(keys))
    app = MotiaApp([counting_step(seen)], state=fresh_url(options.workdir), cron=False, delivery=DeliveryOptions())
    await app.startup()
    try:
        async with measured(options.callgrind) as span:
            await write_all(app.state, keys, options.tasks)
            await asyncio.wait_for(seen.done.wait(), 300)
    finally:
        await app.shutdown()
    seen.check(keys, "today")
    return span


async def log(options: Options, real: bool = True) -> Measured:
    keys = workload(options.n, options.keys)
    seen = Seen(len(keys))
    app = MotiaApp([counting_step(seen)], state=fresh_url(options.workdir), cron=False, delivery=False)
    await app.startup()
    try:
        await app.state.backend.enable_events()  # no subscription registered: each change is one outbox row
        consumer = LogConsumer(app, seen, real, options)
        try:
            async with measured(options.callgrind) as span:
                consuming = asyncio.create_task(consumer.run(len(keys)))
                await write_all(app.state, keys, options.tasks)
                await asyncio.wait_for(consuming, 300)
            consumer.check(len(keys))
            span.details = {
                "ranges": consumer.ranges,
                "events per range": len(keys) / consumer.ranges,
                "events after their key's earlier one": consumer.chained,
                "read µs/event on the loop": consumer.read_seconds / len(keys) * 1e6,
                "cursor µs/event on the loop": consumer.cursor_seconds / len(keys) * 1e6,
            }
        finally:
            consumer.close()
    finally:
        await app.shutdown()
    seen.check(keys, "log" if real else "bare")
    return span


async def bare(options: Options) -> Measured:
    return await log(options, real=False)


async def outbox(options: Options) -> Measured:
    """The writes of ``log`` and ``bare`` (events on, no subscription) with nobody reading the outbox."""
    keys = workload(options.n, options.keys)
    async with StateManager.from_url(fresh_url(options.workdir)) as sm:
        await sm.backend.enable_events()
        async with measured(options.callgrind) as span:
            await write_all(sm, keys, options.tasks)
        count = await asyncio.to_thread(_outbox_rows, sqlite_file(sm))
        if count != len(keys):
            raise AssertionError(f"outbox: {count} rows for {len(keys)} writes")
    return span


def _outbox_rows(path: Path) -> int:
    with closing(sqlite3.connect(path)) as connection:
        count: int = connection.execute("SELECT count(*) FROM motia_state_events").fetchone()[0]
    return count


async def plain(options: Options) -> Measured:
    keys = workload(options.n, options.keys)
    async with StateManager.from_url(fresh_url(options.workdir)) as sm:
        async with measured(options.callgrind) as span:
            await write_all(sm, keys, options.tasks)
    return span


MEASURE: dict[str, Callable[[Options], Awaitable[Measured]]] = {
    "today": today,
    "log": log,
    "bare": bare,
    "outbox": outbox,
    "plain": plain,
}


async def run(args: argparse.Namespace) -> None:
    variants = [args.variant] if args.variant else list(VARIANTS)
    with tempfile.TemporaryDirectory(prefix="motia-log-bench-") as tmp:
        options, options.workdir = args, Path(tmp)  # the variants read their settings from the command line
        rounds: dict[str, list[Measured]] = {variant: [] for variant in variants}
        for _ in range(args.repeat):
            for variant in variants:  # interleaved: the machine's noise hits every variant alike
                rounds[variant].append(await MEASURE[variant](options))
    report(args, rounds)


def report(args: argparse.Namespace, rounds: dict[str, list[Measured]]) -> None:
    n = args.n
    rate = {v: statistics.median(n / m.seconds for m in ms) for v, ms in rounds.items()}
    cpu = {v: statistics.median(m.cpu / n * 1e6 for m in ms) for v, ms in rounds.items()}
    print(
        f"\nstate events end to end, SQLite, uvloop: {n:,} writes by {args.tasks} tasks over {args.keys or n:,} keys,"
        f" median of {args.repeat} interleaved rounds (batch {args.batch}, cursor {args.cursor}, reader {args.reader},"
        f" handlers {args.handlers})"
    )
    print(f"{'variant':<8} {'events/s':>10} {'ratio':>7} {'CPU µs/event':>13} {'CPU ratio':>10}  rounds (events/s)")
    for variant, ms in rounds.items():
        ratio = f"{rate[variant] / rate['plain']:.2f}x" if "plain" in rate else "-"
        cpu_ratio = f"{cpu['plain'] / cpu[variant]:.2f}x" if "plain" in cpu else "-"
        each = ", ".join(f"{n / m.seconds:,.0f}" for m in ms)
        print(f"{variant:<8} {rate[variant]:>10,.0f} {ratio:>7} {cpu[variant]:>13.1f} {cpu_ratio:>10}  {each}")
    for variant, ms in rounds.items():
        if ms[0].details:
            details = {name: statistics.median(m.details[name] for m in ms) for name in ms[0].details}
            print(f"{variant}: " + ", ".join(f"{name} {value:,.2f}" for name, value in details.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="writes (events) per round")
    parser.add_argument("--keys", type=int, default=0, help="distinct keys (default n: each key written once)")
    parser.add_argument("--tasks", type=int, default=200, help="concurrent writers")
    parser.add_argument(
        "--repeat", type=int, default=None, help="interleaved rounds, medians reported (default 3; 1 with --callgrind)"
    )
    parser.add_argument("--batch", type=int, default=100, help="events per range the consumer reads at most")
    parser.add_argument("--cursor", choices=("own", "writer"), default="own", help="where the cursor move commits")
    parser.add_argument("--reader", choices=("inline", "thread"), default="inline", help="where ranges are read")
    parser.add_argument(
        "--handlers",
        choices=("task", "inline"),
        default="task",
        help="log/bare: a task per handler (as the worker), or each awaited in turn (what the task costs)",
    )
    parser.add_argument("--variant", choices=VARIANTS, help="one variant only (with --callgrind)")
    parser.add_argument("--callgrind", action="store_true", help="count instructions of the measured span only")
    args = parser.parse_args()
    if args.callgrind and (not args.variant or args.repeat not in (None, 1)):
        parser.error("--callgrind counts one round of one --variant per run")
    if args.repeat is None:
        args.repeat = 1 if args.callgrind else 3
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
