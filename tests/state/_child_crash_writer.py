"""Child process for test_crash: writes forever until killed, acknowledging each write on stdout.

Usage: python _child_crash_writer.py {async|sync|batch} URL PREFIX SEED
Each iteration sets key "<PREFIX>-<i>" in scope "crash" to {"i": i, "pad": "x" * size} and, only after set
returned, prints "set <key> <i> <size>"; then increments scope "crash-counter" key "n" and, only after update
returned, prints "inc <new n>". Prints "ready" first, once the store is open.
"batch" mode issues 16 iterations at a time as concurrent tasks (group commit), each acknowledging its own
writes as soon as its own call returned.
"""

from __future__ import annotations

import asyncio
import random
import sys

from motia import StateManager, SyncStateManager

OPS = [{"type": "increment", "path": "n", "value": 1}]


def main() -> None:
    mode, url, prefix, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rng = random.Random(seed)
    if mode == "sync":
        sm = SyncStateManager.from_url(url)
        print("ready", flush=True)
        i = 0
        while True:
            key, size = f"{prefix}-{i:06d}", rng.randrange(0, 20_000)
            sm.set("crash", key, {"i": i, "pad": "x" * size})
            print(f"set {key} {i} {size}", flush=True)
            print(f"inc {sm.update('crash-counter', 'n', OPS).new_value['n']}", flush=True)
            i += 1
    elif mode == "batch":
        asyncio.run(run_batches(url, prefix, rng))
    else:
        asyncio.run(run_async(url, prefix, rng))


async def run_async(url: str, prefix: str, rng: random.Random) -> None:
    sm = StateManager.from_url(url)
    print("ready", flush=True)
    i = 0
    while True:
        key, size = f"{prefix}-{i:06d}", rng.randrange(0, 20_000)
        await sm.set("crash", key, {"i": i, "pad": "x" * size})
        print(f"set {key} {i} {size}", flush=True)
        result = await sm.update("crash-counter", "n", OPS)
        print(f"inc {result.new_value['n']}", flush=True)
        i += 1


async def run_batches(url: str, prefix: str, rng: random.Random) -> None:
    sm = StateManager.from_url(url)
    print("ready", flush=True)

    async def one(i: int, size: int) -> None:
        key = f"{prefix}-{i:06d}"
        await sm.set("crash", key, {"i": i, "pad": "x" * size})
        print(f"set {key} {i} {size}", flush=True)
        result = await sm.update("crash-counter", "n", OPS)
        print(f"inc {result.new_value['n']}", flush=True)

    i = 0
    while True:
        await asyncio.gather(*(one(i + j, rng.randrange(0, 20_000)) for j in range(16)))
        i += 16


if __name__ == "__main__":
    main()
