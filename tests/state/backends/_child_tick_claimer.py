"""Child process for the tick-claim race in test_sqlite.py: open a store, say "ready", wait for "go" on stdin,
then claim ticks.

Usage: python _child_tick_claimer.py URL COUNT
Claims ticks 0..COUNT-1 of one job one after another and prints "won <json list of the ticks it won>".
"""

from __future__ import annotations

import asyncio
import json
import sys

from motia import StateManager

BASE = 1_700_000_000.0


async def main(url: str, count: int) -> list[int]:
    sm = StateManager.from_url(url)
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(f"expected 'go', got {line!r}")
    won = [i for i in range(count) if await sm.backend.claim_tick("cron:job:0", BASE + i, hold=3600)]
    await sm.aclose()
    return won


if __name__ == "__main__":
    print("won " + json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))), flush=True)
