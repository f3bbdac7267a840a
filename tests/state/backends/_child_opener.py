"""Child process for test_sqlite_open: open (creating) one new store after another, in step with the others.

Usage: python _child_opener.py DIR {open|write} START FILES INTERVAL
For n in 0..FILES-1, at Unix time START + n * INTERVAL (so every child opens file n at the same moment), opens
``DIR/s<n>.db`` (the first to get there creates it), then sets one key ("open") or twenty ("write": another
process writing while the others open), and closes it. Prints "fail <n> <error>" for each open or write that
raised a MotiaError, then "done <failures>".
"""

from __future__ import annotations

import asyncio
import sys
import time

from motia import StateManager
from motia.exceptions import MotiaError


async def main(directory: str, mode: str, start: float, files: int, interval: float) -> int:
    failures = 0
    for n in range(files):
        at = start + n * interval
        while time.time() < at:
            await asyncio.sleep(0.0005)
        try:
            async with StateManager.from_url(f"sqlite:///{directory}/s{n}.db") as sm:
                for i in range(20 if mode == "write" else 1):
                    await sm.set(mode, f"k{i}", i)
        except MotiaError as exc:
            failures += 1
            print(f"fail {n} {type(exc).__name__}: {exc}", flush=True)
    return failures


if __name__ == "__main__":
    directory, mode, start, files, interval = sys.argv[1:6]
    print(f"done {asyncio.run(main(directory, mode, float(start), int(files), float(interval)))}", flush=True)
