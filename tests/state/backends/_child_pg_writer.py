"""Child process for test_postgres_streams: changes made by another process on the same PostgreSQL store.

Usage: python _child_pg_writer.py URL {count N|forever SEED|enqueue N}
Opens the store at URL and prints "ready", then waits for "go" on stdin.
- ``count N``: writes N changes to stream "s", group "g" (creates and updates of items "i0".."i4", every fifth
  a send), one after another, printing "done" after the last.
- ``forever SEED``: writes until killed, 8 concurrent tasks at a time, a random mix of creates, updates, deletes
  and sends over groups "g0".."g3" and items "i0".."i9"; after each write returned it prints "ack <position>"
  (nothing for a delete of an absent item).
- ``enqueue N``: enqueues N queue deliveries "m0".."m<N-1>" for step "worker", one call each, printing "done".
"""

from __future__ import annotations

import asyncio
import random
import sys

from motia.state.backends.base import StateBackend
from motia.state.backends.types import NewDelivery, StreamChange
from motia.state.urls import open_backend

HISTORY = 1_000_000  # nothing is trimmed: the test replays the whole log


async def count(backend: StateBackend, total: int) -> None:
    for index in range(total):
        if index % 5 == 4:
            await backend.stream_send("s", "g", None, b'{"type":"tick","data":%d}' % index, history=HISTORY)
        else:
            await backend.stream_write("s", "g", f"i{index % 5}", b"%d" % index, if_version=None, history=HISTORY)
    print("done", flush=True)


async def forever(backend: StateBackend, seed: int) -> None:
    rng = random.Random(seed)

    async def one(n: int) -> None:
        group, item = f"g{rng.randrange(4)}", f"i{rng.randrange(10)}"
        roll = rng.random()
        if roll < 0.15:
            change: StreamChange | None = await backend.stream_send(
                "s", group, item, b'{"type":"e","data":%d}' % n, history=HISTORY
            )
        else:
            data = None if roll < 0.35 else b'{"n":%d,"pad":"%s"}' % (n, b"x" * rng.randrange(2000))
            change = await backend.stream_write("s", group, item, data, if_version=None, history=HISTORY)
        if change is not None:
            print(f"ack {change.position}", flush=True)

    n = 0
    while True:
        await asyncio.gather(*(one(n + k) for k in range(8)))
        n += 8


async def enqueue(backend: StateBackend, total: int) -> None:
    for index in range(total):
        await backend.enqueue([NewDelivery(f"m{index}", "worker", "queue", b"%d" % index)])
    print("done", flush=True)


async def main() -> None:
    url, mode, argument = sys.argv[1], sys.argv[2], int(sys.argv[3])
    backend = open_backend(url)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    try:
        if mode == "count":
            await count(backend, argument)
        elif mode == "enqueue":
            await enqueue(backend, argument)
        else:
            await forever(backend, argument)
    finally:
        await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
