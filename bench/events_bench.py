"""Events benchmark (SQLite): what durable state triggers cost and how fast they deliver.

Run from the repository root:

    .venv/bin/python bench/events_bench.py                 # N=10,000 writes, 5 rounds
    .venv/bin/python bench/events_bench.py -n 20000 --repeat 7
    .venv/bin/python bench/events_bench.py --loop asyncio  # plain asyncio instead of uvloop

Runs on uvloop by default, the loop ``motia run`` serves on (uvicorn picks uvloop when it is installed,
as ``pymotia`` installs it); every table names its loop.

Three figures, all on SQLite files in a temporary directory, in one process and one run:

1. ``set`` throughput, sequential (one awaited write at a time) and concurrent (``--tasks`` writers,
   group-committed), in four configurations: *no outbox* (events never enabled: the baseline), *outbox*
   (events recorded in each write's transaction, nothing dispatching), *outbox + dispatch* (the same with
   the dispatcher moving events to deliveries for one subscription while the writes run: the whole cost
   of the outbox, the handlers running elsewhere) and *outbox + trigger* (a ``MotiaApp`` with one
   subscribed state trigger dispatching *and handling* every event on the same event loop as the
   writes). Rounds are interleaved; each figure is the median of ``--repeat`` rounds, and the cost is
   ``1 - rate / baseline rate``.
2. End-to-end throughput: events per second from the first write to the last handler completion, ``n``
   concurrent writes, handler = an ``async def`` that counts.
3. Latency under light load: one write every ``--interval`` seconds; the time from the start of the
   ``set`` call to the handler's return, as percentiles (p50, p90, p99).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import itertools
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from motia import StateManager, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.state_triggers import EventDispatcher
from motia.state.backends.base import Subscription

SCOPE = "sessions"
_counter = itertools.count()
_files = itertools.count()


def next_value() -> dict[str, object]:
    """A value that changes every call (SQLite skips byte-identical rewrites)."""
    return {"userId": "42", "expiresAt": next(_counter), "data": {}}


def fresh_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / f'events-{next(_files)}.db'}"


async def time_writes(state_manager: StateManager, n: int, tasks: int) -> tuple[float, float]:
    """Seconds and CPU seconds of this process (``time.process_time``: it moves far less than the wall
    clock with other load on the machine) for ``n`` sets over ``n`` keys, by ``tasks`` concurrent
    writers (1: sequential)."""
    keys = [f"k{i}" for i in range(n)]

    async def writer(chunk: list[str]) -> None:
        for key in chunk:
            await state_manager.set(SCOPE, key, next_value())

    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(writer(keys[i::tasks]) for i in range(tasks)))
    return time.perf_counter() - start, time.process_time() - cpu


class Counter:
    """A state-trigger handler that counts, and tells when it has seen ``expected`` events."""

    def __init__(self) -> None:
        self.count = 0
        self.expected = 0
        self.done = asyncio.Event()
        self.latencies: list[float] = []
        self.started_at: dict[str, float] = {}

    async def __call__(self, input: Any, ctx: Any) -> None:
        self.count += 1
        started = self.started_at.pop(input.key, None)
        if started is not None:
            self.latencies.append(time.perf_counter() - started)
        if self.count >= self.expected:
            self.done.set()


async def start_app(url: str, handler: Counter, options: DeliveryOptions) -> MotiaApp:
    steps = [step({"name": "count", "triggers": [state(scope=SCOPE)]}, handler)]
    app = MotiaApp(steps, state=url, cron=False, delivery=options)
    await app.startup()
    return app


async def set_rates(
    n: int, repeat: int, tasks: int, workdir: Path, options: DeliveryOptions, only: list[str] | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """Median set rates (ops/s) and median CPU microseconds of this process per write, per configuration
    and mode. For *outbox + trigger* the CPU time runs to the last handler's return: the whole cost of a
    subscribed write, its delivery included."""
    samples: dict[str, list[float]] = {}
    cpu_samples: dict[str, list[float]] = {}

    async def no_outbox(concurrency: int) -> tuple[float, float]:
        async with StateManager.from_url(fresh_url(workdir)) as sm:
            return await time_writes(sm, n, concurrency)

    async def outbox(concurrency: int) -> tuple[float, float]:
        async with StateManager.from_url(fresh_url(workdir)) as sm:
            await sm.backend.enable_events()
            return await time_writes(sm, n, concurrency)

    async def with_dispatch(concurrency: int) -> tuple[float, float]:
        async with StateManager.from_url(fresh_url(workdir)) as sm:
            await sm.backend.enable_events()
            wake = asyncio.Event()
            sm.backend.add_listener(wake.set)
            dispatcher = EventDispatcher(
                sm.backend,
                [Subscription("count", SCOPE)],
                wake=wake,
                poll_interval=options.poll_interval,
                batch_window=options.batch_window,
                on_error=lambda exc: 0.1,
                after_cycle=lambda: None,
            )
            task = asyncio.create_task(dispatcher.run())
            try:
                return await time_writes(sm, n, concurrency)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def with_trigger(concurrency: int) -> tuple[float, float]:
        handler = Counter()
        handler.expected = n
        app = await start_app(fresh_url(workdir), handler, options)
        try:
            cpu = time.process_time()
            seconds, _ = await time_writes(app.state, n, concurrency)
            await asyncio.wait_for(handler.done.wait(), 300)  # let it finish before the next round
            return seconds, time.process_time() - cpu
        finally:
            await app.shutdown()

    configurations: list[tuple[str, Callable[[int], Awaitable[tuple[float, float]]]]] = [
        ("no outbox", no_outbox),
        ("outbox", outbox),
        ("outbox + dispatch", with_dispatch),
        ("outbox + trigger", with_trigger),
    ]
    if only:
        configurations = [(name, measure) for name, measure in configurations if name in ("no outbox", *only)]
    for _ in range(repeat):
        for mode, concurrency in (("sequential", 1), ("concurrent", tasks)):
            for name, measure in configurations:
                seconds, cpu = await measure(concurrency)
                samples.setdefault(f"{name}|{mode}", []).append(n / seconds)
                cpu_samples.setdefault(f"{name}|{mode}", []).append(cpu / n * 1e6)
    return (
        {label: statistics.median(values) for label, values in samples.items()},
        {label: statistics.median(values) for label, values in cpu_samples.items()},
    )


async def end_to_end(n: int, tasks: int, workdir: Path, options: DeliveryOptions) -> tuple[float, float]:
    """Events per second from the first write to the last handler completion, and CPU microseconds of this
    process per event over the same span."""
    handler = Counter()
    handler.expected = n
    app = await start_app(fresh_url(workdir), handler, options)
    try:
        cpu = time.process_time()
        start = time.perf_counter()
        await time_writes(app.state, n, tasks)
        await asyncio.wait_for(handler.done.wait(), 300)
        return n / (time.perf_counter() - start), (time.process_time() - cpu) / n * 1e6
    finally:
        await app.shutdown()


async def latency(count: int, interval: float, workdir: Path, options: DeliveryOptions) -> list[float]:
    """Write-to-handler-return latencies (seconds) of ``count`` writes spaced ``interval`` apart."""
    handler = Counter()
    handler.expected = count
    app = await start_app(fresh_url(workdir), handler, options)
    try:
        for i in range(count):
            key = f"k{i}"
            handler.started_at[key] = time.perf_counter()
            await app.state.set(SCOPE, key, next_value())
            await asyncio.sleep(interval)  # pacing: light load, one event in flight at a time
        await asyncio.wait_for(handler.done.wait(), 60)
        return handler.latencies
    finally:
        await app.shutdown()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def print_rates(args: argparse.Namespace, where: str, rates: dict[str, float], cpus: dict[str, float]) -> None:
    rows = []
    for mode in ("sequential", "concurrent"):
        base = rates[f"no outbox|{mode}"]
        for name in ("no outbox", "outbox", "outbox + dispatch", "outbox + trigger"):
            if f"{name}|{mode}" not in rates:
                continue
            rate = rates[f"{name}|{mode}"]
            cost = "-" if name == "no outbox" else f"{(1 - rate / base) * 100:.1f}%"
            cpu = cpus[f"{name}|{mode}"]
            rows.append([mode, name, f"{rate:,.0f}", cost, f"{rate / base:.2f}x", f"{cpu:.0f}"])
    print_table(
        f"set throughput, {where}, n={args.n:,}, median of {args.repeat} (concurrent: {args.tasks} tasks)",
        ["mode", "configuration", "sets/s", "cost vs no outbox", "ratio to no outbox", "CPU µs/write"],
        rows,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="writes per round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds per set-rate figure (median reported)")
    parser.add_argument("--tasks", type=int, default=200, help="concurrent writers for the concurrent rows")
    parser.add_argument("--latency-writes", type=int, default=500, help="writes in the latency run")
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between writes in the latency run")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the event loop to run on")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated configurations to measure besides 'no outbox' (e.g. 'outbox,outbox + dispatch'),"
        " and only the set-rate table: a short A/B of the write side",
    )
    args = parser.parse_args()
    return args


async def run(args: argparse.Namespace) -> None:
    where = f"SQLite, {args.loop}"
    options = DeliveryOptions()  # the defaults `motia run` uses: lease 30 s, poll 0.1 s, 16 handlers at once

    with tempfile.TemporaryDirectory(prefix="motia-events-bench-") as tmp:
        workdir = Path(tmp)
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        rates, cpus = await set_rates(args.n, args.repeat, args.tasks, workdir, options, only)
        if only:
            print_rates(args, where, rates, cpus)
            return
        runs = [await end_to_end(args.n, args.tasks, workdir, options) for _ in range(3)]
        e2e = [rate for rate, _ in runs]
        e2e_cpu = [cpu for _, cpu in runs]
        lat = await latency(args.latency_writes, args.interval, workdir, options)

    print_rates(args, where, rates, cpus)
    print_table(
        f"state events end to end (first write to last handler return), {where}",
        ["writes", "events/s (median of 3)", "ratio to plain writes/s (no outbox, concurrent)", "CPU µs/event"],
        [
            [
                f"{args.n:,} by {args.tasks} tasks",
                f"{statistics.median(e2e):,.0f}",
                f"{statistics.median(e2e) / rates['no outbox|concurrent']:.2f}x",
                f"{statistics.median(e2e_cpu):.0f}",
            ]
        ],
    )
    ms = [x * 1000 for x in lat]
    print_table(
        f"write-to-handler latency, light load (1 write every {args.interval * 1000:g} ms), {where}",
        ["events", "p50 ms", "p90 ms", "p99 ms", "max ms"],
        [
            [
                str(len(ms)),
                f"{percentile(ms, 0.5):.2f}",
                f"{percentile(ms, 0.9):.2f}",
                f"{percentile(ms, 0.99):.2f}",
                f"{max(ms):.2f}",
            ]
        ],
    )


def main() -> None:
    args = parse_args()
    if args.loop == "uvloop":
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
