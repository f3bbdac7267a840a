"""Child process for test_sqlite_recorded: lone writes with events on until killed.

Usage: python _child_recorded_writer.py URL
Enables events, creates scope "count" key "n", prints "ready"; then sets key "k<i>" in scope "crash" and
increments "n", one awaited write at a time, printing "ack <i>" only after both returned.
"""

from __future__ import annotations

import asyncio
import sys

from motia import StateManager

OPS = [{"type": "increment", "path": "n", "value": 1}]


async def main(url: str) -> None:
    state = StateManager.from_url(url)
    await state.backend.enable_events()
    await state.set("count", "n", {"n": 0})
    print("ready", flush=True)
    i = 0
    while True:
        await state.set("crash", f"k{i:06d}", {"i": i})
        await state.update("count", "n", OPS)
        print(f"ack {i}", flush=True)
        i += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
