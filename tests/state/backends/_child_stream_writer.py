"""Child process for test_sqlite_streams: stream changes made by another process on the same file.

Usage: python _child_stream_writer.py PATH {count N|forever SEED}
Opens the SQLite store at PATH and prints "ready", then waits for "go" on stdin.
- ``count N``: writes N changes to stream "s", group "g" (creates and updates of items "i0".."i4", every fifth
  a send), one after another, printing "done" after the last.
- ``forever SEED``: writes until killed, 8 concurrent tasks at a time (so batches are group committed), a random
  mix of creates, updates, deletes and sends over groups "g0".."g3" and items "i0".."i9"; after each write
  returned it prints "ack <position>" (nothing for a delete of an absent item).
"""

from __future__ import annotations

import asyncio
import random
import sys

from motia.state.backends.sqlite import SQLiteBackend
from motia.state.backends.types import StreamChange

HISTORY = 1_000_000  # nothing is trimmed: the test replays the whole log


async def count(backend: SQLiteBackend, total: int) -> None:
    for index in range(total):
        if index % 5 == 4:
            await backend.stream_send("s", "g", None, b'{"type":"tick","data":%d}' % index, history=HISTORY)
        else:
            await backend.stream_write("s", "g", f"i{index % 5}", b"%d" % index, if_version=None, history=HISTORY)
    print("done", flush=True)


async def forever(backend: SQLiteBackend, seed: int) -> None:
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


async def main() -> None:
    path, mode, argument = sys.argv[1], sys.argv[2], int(sys.argv[3])
    backend = SQLiteBackend(path)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    try:
        if mode == "count":
            await count(backend, argument)
        else:
            await forever(backend, argument)
    finally:
        await backend.aclose()


if __name__ == "__main__":
    asyncio.run(main())
