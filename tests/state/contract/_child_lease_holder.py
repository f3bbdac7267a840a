"""Child process for test_leases: open a store, say "ready", wait for "go" on stdin, then take one lease in turns.

Usage: python _child_lease_holder.py URL OWNER ROUNDS
ROUNDS times: poll ``acquire_lease`` until it succeeds, hold the lease a moment (recording the interval it was held,
on the machine-wide monotonic clock), release it. Prints "held <json list of [start, end]>".
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from motia import StateManager

NAME = "cron:job:contended"
TTL = 60.0  # far longer than any hold: the lease must pass by release only
POLL_DEADLINE = 90.0


async def main(url: str, owner: str, rounds: int) -> list[list[float]]:
    sm = StateManager.from_url(url)
    backend = sm.backend
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(f"expected 'go', got {line!r}")
    held: list[list[float]] = []
    deadline = time.monotonic() + POLL_DEADLINE
    for _ in range(rounds):
        while not await backend.acquire_lease(NAME, owner, ttl=TTL):
            if time.monotonic() > deadline:
                sys.exit(f"{owner} could not take the lease within {POLL_DEADLINE} s")
            await asyncio.sleep(0.001)  # bounded polling of other processes
        start = time.monotonic()
        await asyncio.sleep(0.002)  # hold it while the others try
        end = time.monotonic()
        if not await backend.release_lease(NAME, owner):
            sys.exit(f"{owner} lost a lease it held")
        held.append([start, end])
        await asyncio.sleep(0)  # give the others a chance
    await sm.aclose()
    return held


if __name__ == "__main__":
    print("held " + json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))), flush=True)
