"""Child process for test_concurrency: open a store, say "ready", wait for "go" on stdin, then increment one key.

Usage: python _child_counter.py {async|sync} URL COUNT
Prints "ready" once the store is open, then (after "go") one final line: "done <json list of new values>".
"""

from __future__ import annotations

import asyncio
import json
import sys

from motia import StateManager, SyncStateManager

OPS = [{"type": "increment", "path": "n", "value": 1}]


def wait_for_go() -> None:
    print("ready", flush=True)
    line = sys.stdin.readline()
    if line.strip() != "go":
        sys.exit(f"expected 'go', got {line!r}")


def run_sync(url: str, count: int) -> list[int]:
    sm = SyncStateManager.from_url(url)
    wait_for_go()
    seen = [sm.update("counter", "shared", OPS).new_value["n"] for _ in range(count)]
    sm.close()
    return seen


async def run_async(url: str, count: int) -> list[int]:
    sm = StateManager.from_url(url)
    wait_for_go()
    seen = [(await sm.update("counter", "shared", OPS)).new_value["n"] for _ in range(count)]
    await sm.aclose()
    return seen


def main() -> None:
    mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    seen = run_sync(url, count) if mode == "sync" else asyncio.run(run_async(url, count))
    print("done " + json.dumps(seen), flush=True)


if __name__ == "__main__":
    main()
