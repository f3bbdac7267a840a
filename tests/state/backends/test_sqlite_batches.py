"""SQLite group commit and the state every process shares (issue 11: #1, #2, #9).

- #2: one call that raises, whatever it raises and however far it got, fails alone; the rest of its batch
  commits and none of its own partial writes does.
- #1: a process that writes right after another process enabled events records an event for every write.
- #9: a store used from many short-lived event loops (``asyncio.run`` per call) keeps a bounded number of
  per-loop writers, connections and threads.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from motia import StateManager
from motia.exceptions import InvalidUpdateError, MotiaError, StateBackendError
from motia.state.backends.base import NewDelivery, Subscription, TransactionWrite
from motia.state.backends.sqlite import SQLiteBackend
from motia.state.ops import Operation
from tests.state.backends._batches import deferred

FIVE = [f"k{i}" for i in range(5)]


async def five_sets(state: StateManager) -> list[asyncio.Future[object]]:
    return [asyncio.ensure_future(state.set("s", key, {"n": i})) for i, key in enumerate(FIVE)]


async def assert_five_committed(sqlite_url: str) -> None:
    # read back through a second store on the same file: what is there was committed
    async with StateManager.from_url(sqlite_url) as other:
        assert {key: await other.get("s", key) for key in FIVE} == {key: {"n": i} for i, key in enumerate(FIVE)}


async def test_a_bad_update_beside_five_sets_fails_alone(sqlite_state: StateManager, sqlite_url: str) -> None:
    # Given a stored int past 64 bits (describing it in the error once raised TypeError and failed the batch)
    await sqlite_state.set("s", "big", {"a": 2**70})
    # When an update that cannot apply to it is gathered with five unrelated sets (one group commit)
    bad = sqlite_state.update("s", "big", [{"type": "set", "path": "a.b", "value": 1}])
    results = await asyncio.gather(bad, *await five_sets(sqlite_state), return_exceptions=True)
    # Then the update alone fails, clearly, and the five sets commit
    assert isinstance(results[0], InvalidUpdateError)
    assert [type(result).__name__ for result in results[1:]] == ["StateSetResult"] * 5
    await assert_five_committed(sqlite_url)
    assert await sqlite_state.get("s", "big") == {"a": 2**70}


class Boom:
    """An increment amount that raises when added: stands in for any unexpected error inside a call."""

    def __radd__(self, other: object) -> object:
        raise RuntimeError("boom")


async def test_a_call_raising_any_exception_fails_alone(sqlite_state: StateManager, sqlite_url: str) -> None:
    # Given a call that raises something that is not a StateError (the manager never builds such an
    # operation: this one is handed to the backend directly, as a bug in a call would behave)
    backend = sqlite_state.backend
    boom = Operation("increment", ("n",), 0, "n", Boom())
    bad = deferred(backend.update, "s", "x", [boom], ttl=None, if_version=None, max_value_bytes=1 << 20)
    # When it is gathered with five sets
    results = await asyncio.gather(bad, *await five_sets(sqlite_state), return_exceptions=True)
    # Then it fails with its own error and the others commit
    assert isinstance(results[0], RuntimeError)
    assert all(not isinstance(result, BaseException) for result in results[1:])
    await assert_five_committed(sqlite_url)


async def test_a_call_failing_halfway_through_its_buffered_writes_writes_none_of_them(
    sqlite_state: StateManager, sqlite_url: str
) -> None:
    # Given a transaction commit whose first write is fine and whose second raises while it is planned
    # (a ttl that is not a number: only a bug could pass one)
    backend = sqlite_state.backend
    writes = [TransactionWrite("s", "first", b"1"), TransactionWrite("s", "second", b"2", ttl="soon")]  # type: ignore[arg-type]
    bad = backend.commit({("s", "first"): 0, ("s", "second"): 0}, writes)
    # When it runs in one batch with five sets
    results = await asyncio.gather(bad, *await five_sets(sqlite_state), return_exceptions=True)
    # Then it fails, its first write is not committed with the others, and the five sets are
    assert isinstance(results[0], TypeError)
    assert all(not isinstance(result, BaseException) for result in results[1:])
    await assert_five_committed(sqlite_url)
    assert await sqlite_state.get("s", "first") is None


async def test_a_call_failing_after_some_of_its_statements_ran_writes_none_of_them(
    sqlite_state: StateManager, sqlite_url: str
) -> None:
    # Given an enqueue whose third delivery cannot be bound (the first two rows are inserted before it fails)
    backend = sqlite_state.backend
    good = [NewDelivery(f"d{i}", "step", "queue", b"{}") for i in range(2)]
    broken = NewDelivery("d2", "step", "queue", object())  # type: ignore[arg-type]
    bad = backend.enqueue([*good, broken])
    # When it runs in one batch with five sets
    results = await asyncio.gather(bad, *await five_sets(sqlite_state), return_exceptions=True)
    # Then it fails with a MotiaError naming the store, its two inserted rows are rolled back, the sets commit
    assert isinstance(results[0], StateBackendError), results[0]
    assert "binding parameter" in str(results[0])
    assert all(not isinstance(result, BaseException) for result in results[1:])
    await assert_five_committed(sqlite_url)
    assert await backend.pending() == 0


async def test_calls_after_a_failed_one_see_the_batch_as_it_was(sqlite_state: StateManager) -> None:
    # Given a batch: a set, a failing call touching the same key, then an update of that key
    backend = sqlite_state.backend
    boom = Operation("increment", ("n",), 0, "n", Boom())
    first = sqlite_state.set("s", "n", {"n": 1})
    bad = deferred(backend.update, "s", "n", [boom], ttl=None, if_version=None, max_value_bytes=1 << 20)
    after = sqlite_state.update("s", "n", [{"type": "increment", "path": "n", "value": 1}])
    results = await asyncio.gather(first, bad, after, return_exceptions=True)
    # Then the update after the failed call builds on the set before it
    assert isinstance(results[1], RuntimeError)
    assert results[2].new_value == {"n": 2}
    entry = await sqlite_state.get_entry("s", "n")
    assert entry is not None and entry.version == 2


ENABLER = """
import asyncio, sys
from motia.state.backends.sqlite import SQLiteBackend

async def main():
    backend = SQLiteBackend(sys.argv[1])
    print("ready", flush=True)
    sys.stdin.readline()
    await backend.enable_events()
    print("enabled", flush=True)
    await backend.aclose()

asyncio.run(main())
"""


async def test_writes_right_after_another_process_enabled_events_all_record_events(
    sqlite_path: Path, child_env: dict[str, str]
) -> None:
    # Given a running process (this one) writing while events are off
    backend = SQLiteBackend(sqlite_path)
    try:
        await backend.set("s", "before", b"0", ttl=None, if_version=None)
        with subprocess.Popen(
            [sys.executable, "-c", ENABLER, str(sqlite_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env,
        ) as enabler:
            assert enabler.stdout is not None and enabler.stdin is not None
            assert enabler.stdout.readline().strip() == "ready"
            await backend.set("s", "still-off", b"0", ttl=None, if_version=None)
            # When another process (an app starting with a state trigger) turns events on
            enabler.stdin.write("go\n")
            enabler.stdin.flush()
            assert enabler.stdout.readline().strip() == "enabled"
            assert enabler.wait(timeout=30) == 0
        # And this process writes at once, alone and in group commits
        await backend.set("s", "k0", b"0", ttl=None, if_version=None)
        await asyncio.gather(
            *(deferred(backend.set, "s", f"k{i}", b"1", ttl=None, if_version=None) for i in range(1, 20))
        )
        # Then every one of those writes recorded its event
        assert await backend.dispatch_events([Subscription("watcher", "s")]) == 20
        assert await backend.pending("watcher") == 20
    finally:
        await backend.aclose()


def test_many_short_lived_loops_keep_writers_connections_and_threads_bounded(sqlite_url: str) -> None:
    # Given one store used from a new event loop per call, as scripts calling asyncio.run() each time do
    sm = StateManager.from_url(sqlite_url)
    backend = sm.backend
    assert isinstance(backend, SQLiteBackend)
    threads_before = threading.active_count()

    async def one(i: int) -> None:
        await sm.set("s", f"k{i % 7}", i)
        await sm.get("s", f"k{i % 7}")

    # When 200 loops come and go, in this thread and in short-lived threads
    for i in range(200):
        asyncio.run(one(i))
    for i in range(20):
        thread = threading.Thread(target=asyncio.run, args=(one(i),))
        thread.start()
        thread.join()
    # Then the per-loop writers of closed loops are released, and connections and threads stay bounded
    assert len(backend._writers) <= 1
    assert len(backend._connections) <= 6  # this thread's + the dead threads' released + 4 workers at most
    assert threading.active_count() <= threads_before + 4
    asyncio.run(sm.aclose())


async def test_unexpected_errors_are_motia_errors_or_the_callers_own(sqlite_state: StateManager) -> None:
    # A failure inside a call never surfaces as a raw sqlite3 error
    backend = sqlite_state.backend
    with pytest.raises(MotiaError):
        await backend.enqueue([NewDelivery("d", "step", "queue", object())])  # type: ignore[arg-type]
    assert await backend.pending() == 0
