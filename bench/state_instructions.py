"""A fixed run of state operations, for counting instructions per operation with callgrind (issue 15).

Wall-clock rates on a loaded machine measure the scheduler; instruction counts do not move with load.
Run it twice, with ``K`` operations and with none, and divide the difference by ``K``:

    for k in 0 3000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/state_instructions.py set $k
    done   # "Collected : N" each; (N_3000 - N_0) / 3000 instructions per set, whole stack, uvloop

Or give several modes, comma-separated, and count each in one run: every phase starts with a call of
``time.thread_time_ns()``, where callgrind can dump its counts (``--dump-before``), so the start-up is paid once:

    valgrind --tool=callgrind --dump-before=time_thread_time_ns --callgrind-out-file=/tmp/cg \\
      .venv/bin/python bench/state_instructions.py set,update,conc,delete,raw-set,raw-update 2000
    # /tmp/cg.2 counts the first mode, /tmp/cg.3 the second...: its "summary:" line / 2000 per operation

Modes: ``set``, ``update``, ``get``, ``delete`` (one awaited call at a time; ``delete`` of a key that another
``set`` wrote just before, the pair counted as one operation), ``conc`` (``set`` from 200 tasks) and
``conc-update`` (``update`` from 200 tasks);
``conc-events`` is ``conc`` with events switched on (no subscription: each change goes to the outbox), the
group path a state trigger's writers take; events stay on for the modes after it, so give it last; ``raw-set``
and ``raw-update`` are ``state_bench.py``'s raw sqlite3 peer doing the same (its autocommit upsert; its
read-change-write transaction), the figures pymotia's are compared with; ``raw-group-set`` and
``raw-group-update`` its group-commit peer (the operations of ``conc`` and ``conc-update`` committed in groups of
200 without a framework: the ceiling of those modes).
A third argument ``steady`` leaves out, for the phases, what runs by the clock rather than per write: the WAL
checkpoints (on a worker thread; a batch that meets one commits on a thread) and the TTL sweep and stream-log trim
due every 5 s of wall time (a batch that runs one takes the full transaction path). Under callgrind a phase lasts
tens of seconds, so how many of them fall in it follows the machine's load, and moved the group-commit modes' counts
by ±3-6k per operation between runs of the same code; ``steady`` counts the write path alone. It also starts the
phases on a restarted WAL (one checkpoint after the set-up) and with the set-up's objects frozen out of the garbage
collector (``gc.freeze``): otherwise where the set-up's last checkpoint left the WAL, and whether a full collection
of every object fell inside a phase, moved ``set`` by up to ±1.5k and ±5k per operation between runs of the same
code (session 29).
The layers of a sequential ``set``, each called directly (give them with ``steady``, before any mode that switches
events on): ``backend-set`` is the SQLite backend's ``set`` awaited (the value encoded by the loop), ``lone-set`` its
lone-write function (``keyvalue._lone_set``) called on the loop's connection, ``statement-set`` that function's
statement alone, ``value`` the loop making and encoding the value; ``set`` minus ``backend-set`` is the manager's
share, ``backend-set`` minus ``lone-set`` the writer's, and so on.
Beside one subscribed state trigger (its subscription registered, nobody handling; give them last, after any
mode that needs events off or no subscription): ``set-events`` is ``set`` with events on (each lone write and
its outbox row one statement), ``seq-dispatch`` the same with the outbox dispatched every
:data:`DISPATCH_EVERY` writes (about what the dispatcher moves per round behind one writer, see
``events_bench.py``), the write and its dispatch counted together, and ``conc-direct`` is ``conc`` with the group
commits making their deliveries in their own transactions (``events_bench.py``'s *outbox + dispatch* rows).
The store is SQLite with 1,000 keys of the ``state_bench.py`` workload, written and read once first (the
peer's table too, in every mode, so that one run of none serves every mode).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from motia import StateManager
from motia.state.backends.sqlite.keyvalue import _SET_ONE, _lone_set
from motia.state.backends.types import Subscription
from state_bench import INCREMENT, SCOPE, RawSQLite, next_value

TASKS = 200
#: Writes per dispatch of the outbox in ``seq-dispatch``.
DISPATCH_EVERY = 32
TRIGGERED = [Subscription("count", SCOPE)]


async def run_mode(mode: str, keys: list[str], state: StateManager, raw: RawSQLite) -> None:
    if mode in ("conc", "conc-events"):

        async def writer(chunk: list[str]) -> None:
            for key in chunk:
                await state.set(SCOPE, key, next_value())

        await asyncio.gather(*(writer(keys[task::TASKS]) for task in range(TASKS)))
    elif mode == "conc-update":

        async def updater(chunk: list[str]) -> None:
            for key in chunk:
                await state.update(SCOPE, key, INCREMENT)

        await asyncio.gather(*(updater(keys[task::TASKS]) for task in range(TASKS)))
    elif mode in ("raw-group-set", "raw-group-update"):
        group = raw.group_set if mode == "raw-group-set" else raw.group_update
        for first in range(0, len(keys), TASKS):
            group(keys[first : first + TASKS])
    elif mode == "raw-set":
        for key in keys:
            raw.set(key)
    elif mode == "raw-update":
        for key in keys:
            raw.update_txn(key)
    elif mode == "delete":
        for _ in keys:
            await state.set(SCOPE, "gone", next_value())
            await state.delete(SCOPE, "gone")
    elif mode in ("backend-set", "lone-set", "statement-set", "value"):
        await _run_layer(mode, keys, state)
    elif mode in ("set", "update", "get"):
        for key in keys:
            if mode == "set":
                await state.set(SCOPE, key, next_value())
            elif mode == "update":
                await state.update(SCOPE, key, INCREMENT)
            else:
                await state.get(SCOPE, key)
    elif mode in ("set-events", "seq-dispatch"):
        for index, key in enumerate(keys, 1):
            await state.set(SCOPE, key, next_value())
            if mode == "seq-dispatch" and index % DISPATCH_EVERY == 0:
                await state.backend.dispatch_events(TRIGGERED)
    elif mode == "conc-direct":

        async def direct(chunk: list[str]) -> None:
            for key in chunk:
                await state.set(SCOPE, key, next_value())

        await asyncio.gather(*(direct(keys[task::TASKS]) for task in range(TASKS)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


async def _run_layer(mode: str, keys: list[str], state: StateManager) -> None:
    """One layer of a sequential ``set`` under the manager, called directly (the ``set`` mode minus each is what the
    layers above it cost): the backend's ``set``; the lone write's function on the loop's connection; its statement
    alone; the loop making and encoding the value."""
    backend: Any = state.backend
    connection = backend._writers[asyncio.get_running_loop()].connection  # the loop's, made by the set-up's writes
    if mode == "backend-set":
        for key in keys:
            await backend.set(SCOPE, key, orjson.dumps(next_value()), ttl=None, if_version=None)
    elif mode == "lone-set":
        for key in keys:
            _lone_set(backend, connection, time.time(), None, SCOPE, key, orjson.dumps(next_value()), None, None)
    elif mode == "statement-set":
        for key in keys:
            connection.hook.row = None
            connection.writes.execute(_SET_ONE, (time.time(), SCOPE, key, orjson.dumps(next_value())))
    else:
        for _ in keys:
            orjson.dumps(next_value())


async def main(modes: list[str], count: int, steady: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="motia-instructions-") as directory:
        state = StateManager.from_url(f"sqlite:///{directory}/state.db")
        raw = RawSQLite(Path(directory) / "raw.db")
        for index in range(1000):
            await state.set(SCOPE, f"k{index}", next_value())
            raw.set(f"k{index}")
        for index in range(300):
            await state.get(SCOPE, f"k{index}")
            await state.update(SCOPE, f"k{index}", INCREMENT)
        keys = [f"k{(index * 7919) % 1000}" for index in range(count)]
        if steady:
            backend: Any = state.backend
            backend._sweep_interval = backend._last_stream_trim = float("inf")
            while backend._checkpointing:  # the set-up's last checkpoint, on a worker thread
                await asyncio.sleep(0.01)
            backend._checkpoint()  # the WAL restarts: every run's phases meet the same file
            backend._checkpointing = True  # as if one were always running: none is started
        for mode in modes:
            if mode == "conc-events" and not state.backend._events_enabled:  # type: ignore[attr-defined]
                await state.backend.enable_events()  # before the phase: not counted
                await state.set(SCOPE, "k0", next_value())
            if mode in ("set-events", "seq-dispatch", "conc-direct"):  # before the phase: not counted
                if not state.backend._events_enabled:  # type: ignore[attr-defined]
                    await state.backend.enable_events()
                while await state.backend.dispatch_events(TRIGGERED):  # registered; the outbox emptied
                    pass
            if steady:
                gc.collect()  # then the survivors are left out of collections: a full one in a phase walks the
                gc.freeze()  # new objects only, as in a run that did not start with a set-up
            time.thread_time_ns()  # a phase starts (callgrind --dump-before=time_thread_time_ns)
            await run_mode(mode, keys, state, raw)
        time.thread_time_ns()
        await state.aclose()
        raw.connection.close()


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1].split(","), int(sys.argv[2]), sys.argv[3:] == ["steady"]))
