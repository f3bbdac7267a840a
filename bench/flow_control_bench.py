"""Flow-control benchmark: what keyed concurrency and rate limits cost a queue step (issue 18).

Run from the repository root:

    .venv/bin/python bench/flow_control_bench.py                       # SQLite, N=2,000 messages, 5 rounds
    .venv/bin/python bench/flow_control_bench.py --redis redis://127.0.0.1:6379/0 -n 5000 --repeat 7

One process, one event loop (uvloop when installed, as ``motia run``), one app per round on a fresh store
(SQLite: a file in a temporary directory; Redis: a fresh key prefix). ``n`` messages are enqueued
(concurrently, 64 at a time) to one queue step whose handler only counts; the figure is messages per
second from the first enqueue to the last handler's return. Configurations, interleaved round by round so
that the machine's load hits them alike:

- *plain*: no flow control (the baseline);
- *key limit 1*: ``concurrency: {"key": "k", "limit": 1}`` over 50 keys (an order key per key, as FIFO);
- *key limit 4*: the same with 4 slots per key (the store counts older deliveries of a key at claim);
- *rate limit (never full)*: ``rate_limit`` of 10^9 per 60 s over 50 keys: the cost of counting starts
  (one state ``update`` per key and claim), nothing ever waits.

Each figure is the median of ``--repeat`` rounds; the cost is ``1 - rate / plain rate``.

``--callgrind`` (run under ``valgrind --tool=callgrind --instr-atstart=no``) runs one *plain* round of ``n`` on
SQLite, after a warm-up round of 50, with instruction counting switched on for that round only
(``callgrind_control``): two runs with different ``n`` give the instructions of one standard-queue message end
to end (enqueued, claimed, handled, completed), which the machine's load does not move:

    for n in 300 2000; do valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null \
        .venv/bin/python bench/flow_control_bench.py -n $n --callgrind 2>&1 | grep Collected; done
    # (N_2000 - N_300) / 1700 instructions per message
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from motia import enqueue, queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions

KEYS = 50
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "key limit 1": {"concurrency": {"key": "k", "limit": 1}},
    "key limit 4": {"concurrency": {"key": "k", "limit": 4}},
    "rate limit (never full)": {"rate_limit": {"limit": 10**9, "period": 60, "key": "k"}},
}


async def one_round(url: str, config: dict[str, Any], n: int) -> float:
    done = asyncio.Event()
    handled = 0

    async def handle(input: Any, ctx: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    target = step({"name": "target", "triggers": [queue("jobs", config=config)]}, handle)
    app = MotiaApp([target], state=url, cron=False, delivery=DeliveryOptions(poll_interval=0.05))
    await app.startup()
    try:
        semaphore = asyncio.Semaphore(64)

        async def send(i: int) -> None:
            async with semaphore:
                await enqueue({"topic": "jobs", "data": {"k": f"key-{i % KEYS}", "i": i}})

        started = time.perf_counter()
        await asyncio.gather(*(send(i) for i in range(n)))
        await asyncio.wait_for(done.wait(), timeout=600)
        return n / (time.perf_counter() - started)
    finally:
        await app.shutdown()


async def count_instructions(n: int) -> None:
    """One plain round of ``n`` with callgrind's counting on (after a warm-up round: imports, first-time costs)."""
    with tempfile.TemporaryDirectory() as workdir:
        await one_round(f"sqlite:///{Path(workdir) / 'warm-up.db'}", CONFIGS["plain"], 50)
        # Valgrind answers between the client's instructions: start the command, let the loop run meanwhile.
        subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
        await asyncio.sleep(1)
        await one_round(f"sqlite:///{Path(workdir) / 'counted.db'}", CONFIGS["plain"], n)
        subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)


async def main(args: argparse.Namespace) -> None:
    if args.callgrind:
        await count_instructions(args.n)
        return
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as workdir:
        for round_ in range(args.repeat):
            for name, config in CONFIGS.items():
                if args.redis:
                    url = f"{args.redis}{'&' if '?' in args.redis else '?'}prefix=flowbench-{uuid.uuid4().hex[:10]}"
                else:
                    url = f"sqlite:///{Path(workdir) / f'{round_}-{len(rates[name])}-{uuid.uuid4().hex[:6]}.db'}"
                rates[name].append(await one_round(url, config, args.n))
    backend = "Redis" if args.redis else "SQLite"
    loop = type(asyncio.get_running_loop()).__module__.split(".")[0]
    print(f"{backend} on {loop}, n={args.n} messages over {KEYS} keys, median of {args.repeat} interleaved rounds")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    base = statistics.median(rates["plain"])
    print(f"{'configuration':<26}{'msg/s':>10}{'cost':>9}")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:<26}{rate:>10.0f}{1 - rate / base:>9.0%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", help="a Redis URL; default: SQLite files")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--callgrind", action="store_true", help="count one plain round's instructions (see above)")
    options = parser.parse_args()
    if options.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            uvloop = None  # type: ignore[assignment]
        if uvloop is not None:
            uvloop.run(main(options))
            raise SystemExit
    asyncio.run(main(options))
