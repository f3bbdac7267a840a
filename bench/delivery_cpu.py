"""What one state-trigger delivery costs the worker alone (SQLite, uvloop): claim, handler, completion.

``n`` state events are written and turned into deliveries with no app running; then an app with one
counting state trigger starts, and the CPU time of the process (``time.process_time``) is measured from
its start until its handler has seen them all. Writes and dispatch are not in the figure, unlike
``events_bench.py``'s end-to-end row.

    .venv/bin/python bench/delivery_cpu.py                 # 3 rounds of n=10,000
    .venv/bin/python bench/delivery_cpu.py -n 2000 --callgrind

``--callgrind`` (run under ``valgrind --tool=callgrind --instr-atstart=no``) switches instruction counting
on for the measured span only (``callgrind_control``), so the ``Collected`` total valgrind prints is the
worker's: instructions per delivery, which the machine's load does not move. Two runs with different
``n`` give the cost of one more delivery (startup cancels out):

    for n in 300 2000; do valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null \\
        .venv/bin/python bench/delivery_cpu.py -n $n --rounds 1 --callgrind 2>&1 | grep Collected; done

``--profile`` runs ``cProfile`` over the measured span of the last round and prints the functions by their
own time, per delivery (the profiler's overhead included: for where the time goes, not how much).

``--end-to-end`` measures the end-to-end row instead: the app runs first, then ``n`` writes by 200 tasks, and the
span runs from the first write to the last handler (writes, dispatch and deliveries: instructions per event).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import subprocess
import tempfile
import time
from pathlib import Path

from events_bench import SCOPE, Counter, fresh_url, start_app, time_writes
from motia import StateManager
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.state_triggers import EventDispatcher
from motia.state.backends.base import Subscription


async def backlog(url: str, n: int) -> None:
    """``n`` deliveries of step ``count`` waiting in a new store at ``url``."""
    async with StateManager.from_url(url) as sm:
        await sm.backend.enable_events()
        dispatcher = EventDispatcher(
            sm.backend,
            [Subscription("count", SCOPE)],
            wake=asyncio.Event(),
            poll_interval=0.1,
            batch_window=0.0,
            on_error=lambda exc: 0.1,
            after_cycle=lambda: None,
        )
        await dispatcher.dispatch_all()  # registers the subscription
        await time_writes(sm, n, 200)
        deadline = time.monotonic() + 60
        while await sm.backend.pending("count") < n:  # lone writes' events wait in the outbox: dispatch them
            if time.monotonic() > deadline:
                raise TimeoutError("the events were not all dispatched")
            await dispatcher.dispatch_all()
            await asyncio.sleep(0.05)


async def one_round(
    workdir: Path, n: int, callgrind: bool, end_to_end: bool = False, profiler: cProfile.Profile | None = None
) -> tuple[float, float]:
    """Deliveries per second and CPU microseconds per delivery of one round."""
    url = fresh_url(workdir)
    if not end_to_end:
        await backlog(url, n)
    handler = Counter()
    handler.expected = n
    app = await start_app(url, handler, DeliveryOptions()) if end_to_end else None
    gc.collect()
    if callgrind:
        # Valgrind answers between the client's instructions: start the command, let the loop run meanwhile.
        subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
        await asyncio.sleep(1)
    if profiler is not None:
        profiler.enable()
    cpu, start = time.process_time(), time.perf_counter()
    if app is None:
        app = await start_app(url, handler, DeliveryOptions())
    try:
        if end_to_end:
            await time_writes(app.state, n, 200)
        await asyncio.wait_for(handler.done.wait(), 300)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    finally:
        await app.shutdown()
    return n / seconds, cpu / n * 1e6


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="motia-delivery-bench-") as tmp:
        for left in reversed(range(args.rounds)):
            profiler = cProfile.Profile() if args.profile and not left else None
            rate, cpu = await one_round(Path(tmp), args.n, args.callgrind, args.end_to_end, profiler)
            what, one = ("events end to end", "event") if args.end_to_end else ("deliveries", "delivery")
            print(f"{args.n:,} {what}: {rate:,.0f}/s, {cpu:.1f} CPU µs per {one}")
            if profiler is not None:
                print_profile(profiler, args.n)


def print_profile(profiler: cProfile.Profile, n: int, top: int = 60) -> None:
    """The ``top`` functions by own time: µs per delivery (own, cumulative) and calls per delivery."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    print(f"{'own µs':>8} {'cum µs':>8} {'calls':>7}  function (per delivery)")
    for (path, line, name), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(path).name}:{line}" if line else path
        print(f"{own / n * 1e6:8.2f} {cumulative / n * 1e6:8.2f} {calls / n:7.3f}  {name} ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true", help="count instructions of the measured span only")
    parser.add_argument("--profile", action="store_true", help="cProfile the last round's measured span")
    parser.add_argument("--end-to-end", action="store_true", help="writes, dispatch and deliveries (200 writers)")
    args = parser.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
