"""Child process for test_sqlite_faults: does one kind of write until it is killed, acknowledging on stdout.

Usage: python _child_sqlite_fault.py {clear|transact} URL [SCOPE]
- clear: prints "start" and then clears scope "big" (filled by the parent), printing "cleared <seconds it took>"
  once clear returned.
- transact: prints "ready", then commits transactions 0, 1, 2, ... each setting keys "t<i>-0".."t<i>-49" of SCOPE
  to i and key "last" of SCOPE-meta to i, printing "ack <i>" once the commit returned.
"""

from __future__ import annotations

import asyncio
import sys
import time

from motia import StateManager

KEYS_PER_TRANSACTION = 50


async def clear(url: str) -> None:
    sm = StateManager.from_url(url)
    print("start", flush=True)
    started = time.monotonic()
    await sm.clear("big")
    print(f"cleared {time.monotonic() - started}", flush=True)
    await sm.aclose()


async def transact(url: str, scope: str) -> None:
    sm = StateManager.from_url(url)
    print("ready", flush=True)
    i = 0
    while True:
        async with sm.transaction() as tx:
            for j in range(KEYS_PER_TRANSACTION):
                await tx.set(scope, f"t{i}-{j}", {"i": i, "pad": "x" * 200})
            await tx.set(f"{scope}-meta", "last", i)
        print(f"ack {i}", flush=True)
        i += 1


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    asyncio.run(clear(url) if mode == "clear" else transact(url, sys.argv[3]))
