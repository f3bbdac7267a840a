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

``--end-to-end`` measures the end-to-end row instead: the app runs first, then ``n`` writes by 200 tasks, and the
span runs from the first write to the last handler (writes, dispatch and deliveries: instructions per event).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
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


async def one_round(workdir: Path, n: int, callgrind: bool, end_to_end: bool = False) -> tuple[float, float]:
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
    cpu, start = time.process_time(), time.perf_counter()
    if app is None:
        app = await start_app(url, handler, DeliveryOptions())
    try:
        if end_to_end:
            await time_writes(app.state, n, 200)
        await asyncio.wait_for(handler.done.wait(), 300)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    finally:
        await app.shutdown()
    return n / seconds, cpu / n * 1e6


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="motia-delivery-bench-") as tmp:
        for _ in range(args.rounds):
            rate, cpu = await one_round(Path(tmp), args.n, args.callgrind, args.end_to_end)
            what, one = ("events end to end", "event") if args.end_to_end else ("deliveries", "delivery")
            print(f"{args.n:,} {what}: {rate:,.0f}/s, {cpu:.1f} CPU µs per {one}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=10_000, help="deliveries per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true", help="count instructions of the measured span only")
    parser.add_argument("--end-to-end", action="store_true", help="writes, dispatch and deliveries (200 writers)")
    args = parser.parse_args()
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run(args))


if __name__ == "__main__":
    main()
