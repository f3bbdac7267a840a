"""A fixed run of state operations, for counting instructions per operation with callgrind (issue 15).

Wall-clock rates on a loaded machine measure the scheduler; instruction counts do not move with load.
Run it twice, with ``K`` operations and with none, and divide the difference by ``K``:

    for k in 0 3000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/state_instructions.py set $k
    done   # "Collected : N" each; (N_3000 - N_0) / 3000 instructions per set, whole stack, uvloop

Modes: ``set``, ``update``, ``get`` (one awaited call at a time) and ``conc`` (``set`` from 200 tasks).
The store is SQLite with 1,000 keys of the ``state_bench.py`` workload, written and read once first.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

import uvloop

from motia import StateManager
from state_bench import INCREMENT, SCOPE, next_value

TASKS = 200


async def main(mode: str, count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="motia-instructions-") as directory:
        state = StateManager.from_url(f"sqlite:///{directory}/state.db")
        for index in range(1000):
            await state.set(SCOPE, f"k{index}", next_value())
        for index in range(300):
            await state.get(SCOPE, f"k{index}")
            await state.update(SCOPE, f"k{index}", INCREMENT)
        keys = [f"k{(index * 7919) % 1000}" for index in range(count)]
        if mode == "conc":

            async def writer(chunk: list[str]) -> None:
                for key in chunk:
                    await state.set(SCOPE, key, next_value())

            await asyncio.gather(*(writer(keys[task::TASKS]) for task in range(TASKS)))
        else:
            for key in keys:
                if mode == "set":
                    await state.set(SCOPE, key, next_value())
                elif mode == "update":
                    await state.update(SCOPE, key, INCREMENT)
                else:
                    await state.get(SCOPE, key)
        await state.aclose()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2])))
