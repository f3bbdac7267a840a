"""What a claim costs behind a hot key (issue 15): ``n`` waiting deliveries of one step over ``k`` order keys, the
head of each key leased, then claims of 16 (which find nothing: every other delivery is blocked). Prints the
CPU and wall-clock microseconds per claim (``time.process_time``, ``perf_counter``: a server's work shows in
the wall clock only) for each ``(n, k)``; a claim that reads the backlog grows with ``n``, one that seeks each
key's head with ``k`` only.

    PYTHONPATH=src:bench .venv/bin/python bench/hot_key_claim.py
    PYTHONPATH=src:bench .venv/bin/python bench/hot_key_claim.py --sizes 5000 --keys 10 --claims 200

``--callgrind`` (run under ``valgrind --tool=callgrind --instr-atstart=no``, one ``(n, k)`` at a time) counts
the claims' instructions only: the ``Collected`` total divided by ``--claims`` is the instructions per claim.

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/dev/null .venv/bin/python \\
        bench/hot_key_claim.py --sizes 5000 --keys 10 --claims 20 --callgrind 2>&1 | grep Collected

``--backend postgres`` runs the same on a private PostgreSQL cluster (the tests' ``PostgresServer``), a schema
per figure.

``--end-to-end``: an app with one counting state trigger runs, ``n`` sets over ``k`` keys by 200 tasks are
written, and the figure runs from the first write to the last handler (events per second, CPU microseconds
per event), as ``delivery_cpu.py --end-to-end`` but over ``k`` keys instead of ``n``.

``--drain``: the common case, nothing blocked: ``n`` deliveries enqueued (100 per call) over ``k`` keys (``0``:
unordered, a standard queue's messages) are claimed 16 at a time and completed until none is left; the figure is
the CPU and wall-clock microseconds per delivery from the first enqueue to the last completion.

    PYTHONPATH=src:bench .venv/bin/python bench/hot_key_claim.py --backend postgres --drain --sizes 5000 --keys 0 5000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.postgres_server import PostgresServer  # the tests' private cluster

from events_bench import SCOPE, Counter, fresh_url, next_value, start_app
from motia import StateManager
from motia.runtime.delivery import DeliveryOptions
from motia.state.backends.base import NewDelivery

_stores = itertools.count()


async def per_claim(url: str, n: int, keys: int, claims: int, callgrind: bool = False) -> tuple[float, float]:
    """CPU and wall-clock microseconds per claim of 16 behind ``n`` deliveries over ``keys`` keys, heads leased,
    in a new store at ``url``."""
    async with StateManager.from_url(url) as sm:
        backend = sm.backend
        await backend.enqueue(
            [NewDelivery(f"d{i}", "count", "state", b"{}", order_key=f"k{i % keys}") for i in range(n)]
        )
        heads = await backend.claim(["count"], owner="w", limit=keys, lease=3600)
        assert len(heads) == min(keys, n)
        if callgrind:  # valgrind answers between the client's instructions: let the loop run meanwhile
            subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
            await asyncio.sleep(1)
        start, wall = time.process_time(), time.perf_counter()
        for _ in range(claims):
            assert await backend.claim(["count"], owner="w", limit=16, lease=3600) == []
        micros = (time.process_time() - start) / claims * 1e6
        wall = (time.perf_counter() - wall) / claims * 1e6
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
        return micros, wall


async def drain(url: str, n: int, keys: int) -> tuple[float, float]:
    """CPU and wall-clock microseconds per delivery: ``n`` deliveries over ``keys`` keys (0: unordered) enqueued,
    claimed 16 at a time and completed, in a new store at ``url``."""
    async with StateManager.from_url(url) as sm:
        backend = sm.backend
        news = [
            NewDelivery(f"d{i}", "count", "queue", b"{}", order_key=f"k{i % keys}" if keys else None) for i in range(n)
        ]
        start, wall = time.process_time(), time.perf_counter()
        for i in range(0, n, 100):
            await backend.enqueue(news[i : i + 100])
        done = 0
        while batch := await backend.claim(["count"], owner="w", limit=16, lease=3600):
            done += len(await backend.complete_many([d.id for d in batch], owner="w"))
        assert done == n
        return (time.process_time() - start) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def end_to_end(url: str, n: int, keys: int, callgrind: bool = False) -> tuple[float, float]:
    """Events per second and CPU microseconds per event: ``n`` writes over ``keys`` keys by 200 tasks, each
    delivered to a counting state trigger, in a new store at ``url``."""
    handler = Counter()
    handler.expected = n
    app = await start_app(url, handler, DeliveryOptions())
    names = [f"k{i % keys}" for i in range(n)]

    async def writer(chunk: list[str]) -> None:
        for key in chunk:
            await app.state.set(SCOPE, key, next_value())

    try:
        if callgrind:
            subprocess.Popen(["callgrind_control", "-i", "on", str(os.getpid())], stdout=subprocess.DEVNULL)
            await asyncio.sleep(1)
        cpu, start = time.process_time(), time.perf_counter()
        await asyncio.gather(*(writer(names[i::200]) for i in range(200)))
        await asyncio.wait_for(handler.done.wait(), 600)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        if callgrind:
            subprocess.run(["callgrind_control", "-i", "off", str(os.getpid())], check=True, capture_output=True)
    finally:
        await app.shutdown()
    return n / seconds, cpu / n * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--keys", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--claims", type=int, default=100)
    parser.add_argument("--callgrind", action="store_true", help="count the claims' instructions only")
    parser.add_argument("--end-to-end", action="store_true", help="writes by 200 tasks delivered to a trigger")
    parser.add_argument("--drain", action="store_true", help="nothing blocked: enqueue, claim and complete")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    server = PostgresServer() if args.backend == "postgres" else None
    try:
        await figures(args, server)
    finally:
        if server is not None:
            server.close()


async def figures(args: argparse.Namespace, server: PostgresServer | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:

        def url_for(n: int, keys: int) -> str:
            if server is None:
                return fresh_url(Path(tmp))
            return f"{server.url}?schema=hot_{n}_{keys}_{next(_stores)}"

        if args.drain:
            for keys in args.keys:
                for n in args.sizes:
                    micros, wall = await drain(url_for(n, keys), n, keys)
                    print(f"n={n:>6} keys={keys:>4}: {micros:9.1f} CPU us, {wall:9.1f} wall us per delivery")
            return
        if args.end_to_end:
            for keys in args.keys:
                for n in args.sizes:
                    rate, micros = await end_to_end(url_for(n, keys), n, keys, args.callgrind)
                    print(f"n={n:>6} keys={keys:>4}: {rate:9,.0f} events/s, {micros:7.1f} CPU us per event")
            return
        for keys in args.keys:
            for n in args.sizes:
                micros, wall = await per_claim(url_for(n, keys), n, keys, args.claims, args.callgrind)
                print(f"n={n:>6} keys={keys:>4}: {micros:9.1f} CPU us, {wall:9.1f} wall us per claim")


if __name__ == "__main__":
    asyncio.run(main())
