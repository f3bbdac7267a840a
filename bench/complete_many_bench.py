"""Completing deliveries on Redis: one function call per batch against one ``complete`` per delivery.

Run from the repository root (needs ``redis-server`` on PATH; it starts a private one):

    .venv/bin/python bench/complete_many_bench.py            # 5 interleaved rounds, 5,000 deliveries each

The delivery worker completes the handlers that returned together with one ``complete_many``. On Redis
that is one call of the ``motia1_complete_many`` function per batch; the rows "one complete per delivery"
run the contract's default instead (``StateBackend.complete_many``: the ``complete`` calls gathered, which
the client pipelines into one round trip, but one function call each on the server). Each round enqueues
5,000 queue deliveries, then claims 50 at a time and completes each batch; the rate counts both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from _loops import add_loop_option, run_on
from motia import StateManager
from motia.state.backends.base import StateBackend
from motia.state.backends.types import NewDelivery

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.redis_server import RedisServer  # noqa: E402 - the tests' private server

BATCH = 50

Completer = Callable[..., Awaitable[set[str]]]


async def rate(backend: StateBackend, complete_many: Completer, tag: str, n: int) -> float:
    """Deliveries per second claimed and completed, ``BATCH`` at a time."""
    await backend.enqueue([NewDelivery(f"{tag}{i}", "w", "queue", b"1") for i in range(n)])
    start = time.perf_counter()
    done = 0
    while done < n:
        claimed = await backend.claim(["w"], owner="o", limit=BATCH, lease=60)
        ids: Sequence[str] = [d.id for d in claimed]
        await complete_many(backend, ids, owner="o")
        done += len(claimed)
    return n / (time.perf_counter() - start)


async def run(args: argparse.Namespace) -> None:
    server = RedisServer()
    try:
        state = StateManager.from_url(server.url)
        backend = state.backend
        modes: dict[str, Completer] = {
            "one function call per batch": type(backend).complete_many,
            "one complete per delivery": StateBackend.complete_many,
        }
        samples: dict[str, list[float]] = {name: [] for name in modes}
        for round_ in range(args.repeat):
            for index, (name, completer) in enumerate(modes.items()):
                samples[name].append(await rate(backend, completer, f"r{round_}-{index}-", args.n))
        await state.aclose()
    finally:
        server.stop()
    print(f"Redis complete_many, {args.loop} loop, {args.n:,} deliveries per round, median of {args.repeat} rounds")
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, value in medians.items():
        print(f"  {name:<30} {value:>8,.0f} deliveries/s (claim + complete)")
    first, second = medians.values()
    print(f"  ratio {first / second:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=5000, help="deliveries per round")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (median reported)")
    add_loop_option(parser)
    args = parser.parse_args()
    run_on(args.loop, run(args))


if __name__ == "__main__":
    main()
