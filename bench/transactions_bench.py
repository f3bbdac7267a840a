"""Transactions and typed scopes: what they cost against the plain calls doing the same work.

Run from the repository root:

    .venv/bin/python bench/transactions_bench.py            # SQLite and memory, 5 rounds
    .venv/bin/python bench/transactions_bench.py --redis redis://127.0.0.1:6379/0   # and Redis
    .venv/bin/python bench/transactions_bench.py --loop asyncio   # asyncio's loop (default: uvloop, as `motia run`)

* **transfer**: move 1 from one counter to another. As a transaction (read both, write both, commit
  once: consistent) vs two separate ``update`` increments (atomic each, not together).
* **typed get/set**: ``state.scope("sessions", Session)`` (pydantic validation on write, model instances
  back) vs untyped ``get``/``set`` of the same values.

One awaited call at a time, rounds interleaved, median of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydantic

from _loops import add_loop_option, run_on
from motia import StateManager


class Session(pydantic.BaseModel):
    userId: str  # noqa: N815 - the JSON field name of the docs' sessions
    expiresAt: int  # noqa: N815
    data: dict[str, Any] = {}


async def rate(operation: Callable[[int], Awaitable[object]], count: int) -> float:
    start = time.perf_counter()
    for index in range(count):
        await operation(index)
    return count / (time.perf_counter() - start)


async def measure(state: StateManager, count: int, repeat: int) -> dict[str, float]:
    await state.set_many("counters", {"a": {"n": 10**9}, "b": {"n": 0}})
    keys = [f"k{index}" for index in range(1000)]
    for key in keys:
        await state.set("sessions", key, {"userId": "42", "expiresAt": 0, "data": {}})
    sessions = state.scope("sessions", Session)

    async def transfer_transaction(_: int) -> None:
        async with state.transaction() as tx:
            a = await tx.get("counters", "a")
            b = await tx.get("counters", "b")
            await tx.set("counters", "a", {"n": a["n"] - 1})
            await tx.set("counters", "b", {"n": b["n"] + 1})

    async def transfer_updates(_: int) -> None:
        await state.update("counters", "a", [{"type": "decrement", "path": "n", "value": 1}])
        await state.update("counters", "b", [{"type": "increment", "path": "n", "value": 1}])

    async def untyped_get(index: int) -> object:
        return await state.get("sessions", keys[index % 1000])

    async def typed_get(index: int) -> object:
        return await sessions.get(keys[index % 1000])

    async def untyped_set(index: int) -> object:
        return await state.set("sessions", keys[index % 1000], {"userId": "42", "expiresAt": index, "data": {}})

    async def typed_set(index: int) -> object:
        return await sessions.set(keys[index % 1000], Session(userId="42", expiresAt=index))

    workloads = {
        "transfer as a transaction": transfer_transaction,
        "transfer as two updates": transfer_updates,
        "untyped get": untyped_get,
        "typed get": typed_get,
        "untyped set": untyped_set,
        "typed set": typed_set,
    }
    samples: dict[str, list[float]] = {name: [] for name in workloads}
    for _ in range(repeat):
        for name, operation in workloads.items():
            samples[name].append(await rate(operation, count))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3000, help="operations per round")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--redis", help="also measure a Redis server (a fresh key prefix is used)")
    add_loop_option(parser)
    args = parser.parse_args()
    run_on(args.loop, run(args))


async def run(args: argparse.Namespace) -> None:
    print(
        f"transactions and typed scopes, {args.n:,} operations a round, median of {args.repeat}, "
        f"{args.loop} event loop\n"
    )
    print("| backend | workload | ops/s | vs plain |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="motia-tx-bench-") as directory:
        targets = [("sqlite", f"sqlite:///{Path(directory) / 'state.db'}"), ("memory", "memory://")]
        if args.redis:
            targets.append(("redis", f"{args.redis}?prefix=txbench{time.time_ns()}"))
        for label, url in targets:
            async with StateManager.from_url(url) as state:
                figures = await measure(state, args.n, args.repeat)
            pairs = [
                ("transfer as a transaction", "transfer as two updates"),
                ("typed get", "untyped get"),
                ("typed set", "untyped set"),
            ]
            for measured, plain in pairs:
                ratio = figures[measured] / figures[plain]
                print(f"| {label} | {measured} | {figures[measured]:,.0f} | {ratio:.2f}x of {plain} |")
                print(f"| {label} | {plain} | {figures[plain]:,.0f} | |")


if __name__ == "__main__":
    main()
