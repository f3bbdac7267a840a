"""No lost update under concurrency (SPEC 1.1 update, 2, 8): tasks, threads and real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from motia import (
    InvalidUpdateError,
    StateClosedError,
    StateConflictError,
    StateManager,
    StateValueError,
    SyncStateManager,
)

CHILD = Path(__file__).with_name("_child_counter.py")
INC = [{"type": "increment", "path": "n", "value": 1}]
PROCESSES = 4
UPDATES_PER_PROCESS = 500


async def test_200_concurrent_tasks_increment_exactly(state):
    # Given 200 asyncio tasks started together on one key
    results = await asyncio.gather(*(state.update("c", "shared", INC) for _ in range(200)))
    # Then the count is exact, the version counts every write, and every task saw a distinct value
    assert await state.get("c", "shared") == {"n": 200}
    assert (await state.get_entry("c", "shared")).version == 200
    assert sorted(r.new_value["n"] for r in results) == list(range(1, 201))
    assert sorted(r.version for r in results) == list(range(1, 201))
    # old_value is always new_value minus one increment (or None for the creating write)
    for r in results:
        old = 0 if r.old_value is None else r.old_value["n"]
        assert r.new_value["n"] == old + 1


async def test_concurrent_tasks_on_many_keys_and_scopes(state):
    # Given tasks spread over 10 keys in 3 scopes, 30 increments each
    jobs = [state.update(f"scope{k % 3}", f"key{k}", INC) for k in range(10) for _ in range(30)]
    await asyncio.gather(*jobs)
    # Then each key holds exactly its own count
    for k in range(10):
        assert await state.get(f"scope{k % 3}", f"key{k}") == {"n": 30}
    assert await state.list_groups() == ["scope0", "scope1", "scope2"]


async def test_concurrent_create_only_if_absent_has_exactly_one_winner(state):
    # Given 50 tasks each trying to create the same key with if_version=0
    async def attempt(i: int) -> int | None:
        try:
            await state.set("locks", "leader", {"owner": i}, if_version=0)
            return i
        except StateConflictError as exc:
            assert exc.actual == 1
            return None

    outcomes = await asyncio.gather(*(attempt(i) for i in range(50)))
    # Then exactly one succeeded and its value is stored
    winners = [i for i in outcomes if i is not None]
    assert len(winners) == 1
    assert await state.get("locks", "leader") == {"owner": winners[0]}
    assert (await state.get_entry("locks", "leader")).version == 1


async def test_compare_and_set_loop_loses_nothing(state):
    # Given 20 tasks doing read-modify-write with if_version, retrying on conflict
    await state.set("c", "cas", {"n": 0})

    async def cas_increment() -> int:
        conflicts = 0
        while True:
            entry = await state.get_entry("c", "cas")
            try:
                await state.set("c", "cas", {"n": entry.value["n"] + 1}, if_version=entry.version)
                return conflicts
            except StateConflictError:
                conflicts += 1

    await asyncio.gather(*(cas_increment() for _ in range(20)))
    # Then every increment landed once
    assert await state.get("c", "cas") == {"n": 20}
    assert (await state.get_entry("c", "cas")).version == 21


async def test_clear_is_atomic_for_concurrent_readers(state):
    # Given a scope with 300 keys
    for i in range(300):
        await state.set("big", f"k{i:04d}", {"i": i})
    # When the scope is cleared while other tasks read it
    readers = [state.count("big") for _ in range(10)] + [state.list("big") for _ in range(5)]
    results = await asyncio.gather(*readers[:8], state.clear("big"), *readers[8:])
    # Then every reader saw all of the scope or none of it
    for r in results:
        if r is None:
            continue
        size = r if isinstance(r, int) else len(r)
        assert size in (0, 300)
    assert await state.count("big") == 0


def test_clear_is_atomic_for_a_reader_in_another_thread(sqlite_url):
    # Given a SQLite scope with 2000 keys, and a thread counting it in a loop
    with SyncStateManager.from_url(sqlite_url) as sm:
        for i in range(2000):
            sm.set("big", f"k{i:05d}", i)
        observed: list[int] = []
        started = threading.Event()
        errors: list[BaseException] = []

        def reader() -> None:
            try:
                with SyncStateManager.from_url(sqlite_url) as other:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline:
                        n = other.count("big")
                        observed.append(n)
                        started.set()  # the clear starts once the reader has seen the full scope once
                        if n == 0:
                            return
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                errors.append(exc)
                started.set()

        thread = threading.Thread(target=reader)
        thread.start()
        started.wait(timeout=60)
        # When the scope is cleared
        sm.clear("big")
        thread.join(timeout=90)
    assert not thread.is_alive()
    assert not errors, errors
    # Then the reader only ever saw 2000 or 0, and ended seeing 0
    assert set(observed) <= {0, 2000}
    assert observed[0] == 2000
    assert observed[-1] == 0


def reap(proc: subprocess.Popen[str]) -> None:
    """Kills the child if it still runs, waits for it and closes its pipes (no ResourceWarning)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            with contextlib.suppress(OSError):
                stream.close()


def run_children(modes: list[str], url: str, count: int, env: dict[str, str]) -> list[list[int]]:
    """Starts one child per mode, waits until all have opened the store, releases them together, returns what
    each child saw (the new value after each of its increments)."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(CHILD), mode, url, str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for mode in modes
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stderr is not None
            line = p.stdout.readline()
            assert line == "ready\n", f"child did not start: {line!r} {p.stderr.read() if not line else ''}"
        for p in procs:  # the barrier: every child is open and waiting; release them all at once
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        seen: list[list[int]] = []
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, f"child failed ({p.returncode}): {err}"
            last = out.strip().splitlines()[-1]
            assert last.startswith("done "), out
            seen.append(json.loads(last[len("done ") :]))
        return seen
    finally:
        for p in procs:
            reap(p)


def check_exact_total(sqlite_url: str, seen: list[list[int]], total: int) -> None:
    with SyncStateManager.from_url(sqlite_url) as sm:
        assert sm.get("counter", "shared") == {"n": total}
        assert sm.get_entry("counter", "shared").version == total  # type: ignore[union-attr]
    # every increment saw a distinct value, and each process saw its own values in increasing order
    assert sorted(v for s in seen for v in s) == list(range(1, total + 1))
    for s in seen:
        assert s == sorted(s)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_processes_increment_one_sqlite_key_exactly(sqlite_url, child_env, mode):
    # Given an existing store and 4 processes opened on it, released together
    with SyncStateManager.from_url(sqlite_url) as sm:
        sm.set("unrelated", "k", 1)
    # When each does 500 increments of the same key
    seen = run_children([mode] * PROCESSES, sqlite_url, UPDATES_PER_PROCESS, child_env)
    # Then the total is exactly 2000
    check_exact_total(sqlite_url, seen, PROCESSES * UPDATES_PER_PROCESS)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["async", "sync"])
def test_processes_increment_one_postgres_key_exactly(postgres_url, child_env, mode, capsys):
    # Given an existing PostgreSQL store and 4 processes opened on it, released together
    with SyncStateManager.from_url(postgres_url) as sm:
        sm.set("unrelated", "k", 1)
    # When each does 500 increments of the same key (one row, so every increment queues on its row lock)
    started = time.perf_counter()
    seen = run_children([mode] * PROCESSES, postgres_url, UPDATES_PER_PROCESS, child_env)
    elapsed = time.perf_counter() - started
    # Then the total is exactly 2000
    check_exact_total(postgres_url, seen, PROCESSES * UPDATES_PER_PROCESS)
    with capsys.disabled():  # the throughput issue 16 asks to record (start-up of the children included)
        print(f"\n{PROCESSES}x{UPDATES_PER_PROCESS} {mode} increments on PostgreSQL: {elapsed:.2f} s", end=" ")


@pytest.mark.slow
def test_mixed_sync_and_async_processes_on_a_fresh_file(sqlite_url, sqlite_path, child_env):
    # Given no database file yet: 4 processes (2 async, 2 sync) create/open it at the same moment
    assert not sqlite_path.exists()
    seen = run_children(["async", "sync", "async", "sync"], sqlite_url, 200, child_env)
    # Then the concurrent creation was safe and no update was lost
    check_exact_total(sqlite_url, seen, 800)


@pytest.mark.slow
async def test_async_tasks_and_a_process_share_a_sqlite_key(sqlite_url, child_env):
    # Given a child process incrementing while 100 tasks in this process do the same
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(CHILD), "sync", sqlite_url, "300"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert await asyncio.to_thread(proc.stdout.readline) == "ready\n"
        async with StateManager.from_url(sqlite_url) as sm:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            await asyncio.gather(*(sm.update("counter", "shared", INC) for _ in range(100)))
            out, err = await asyncio.to_thread(proc.communicate, timeout=240)
            assert proc.returncode == 0, err
            # Then both sets of increments landed
            assert await sm.get("counter", "shared") == {"n": 400}
    finally:
        reap(proc)


async def test_failing_writes_in_a_concurrent_burst_do_not_affect_the_others(state):
    # Given a burst of concurrent writes on one key and its neighbours, some of which must fail
    await state.set("c", "k", {"n": 0, "s": "text"})
    bad_op = [{"type": "increment", "path": "s", "value": 1}]  # increment of a string: InvalidUpdateError
    jobs = []
    for i in range(120):
        if i % 4 == 0:
            jobs.append(state.update("c", "k", bad_op))
        elif i % 4 == 1:
            jobs.append(state.set("c", "k", {"n": -1}, if_version=10_000))  # always a conflict
        elif i % 4 == 2:
            jobs.append(state.set("c", f"other-{i}", float("nan")))  # StateValueError
        else:
            jobs.append(state.update("c", "k", INC))
    results = await asyncio.gather(*jobs, return_exceptions=True)
    # Then each failing call failed with its own error, and every good one landed exactly once
    for i, r in enumerate(results):
        expected = [InvalidUpdateError, StateConflictError, StateValueError, None][i % 4]
        if expected is None:
            assert not isinstance(r, BaseException), r
        else:
            assert isinstance(r, expected), (i, r)
    assert await state.get("c", "k") == {"n": 30, "s": "text"}
    assert (await state.get_entry("c", "k")).version == 31
    assert await state.keys("c") == ["k"]


async def test_burst_of_creates_and_deletes_across_keys(state):
    # Given concurrent creates, updates and deletes over 50 keys
    await asyncio.gather(*(state.set("b", f"k{i:02d}", {"n": 0}) for i in range(50)))
    await asyncio.gather(
        *(state.update("b", f"k{i:02d}", INC) for i in range(50)),
        *(state.delete("b", f"k{i:02d}") for i in range(0, 50, 5)),
    )
    # Then deleted keys are gone or recreated by a later update, and the rest hold exactly one increment
    for i in range(50):
        value = await state.get("b", f"k{i:02d}")
        if i % 5:
            assert value == {"n": 1}
        else:
            assert value in (None, {"n": 1})  # the update may run before or after the delete


async def test_close_with_writes_in_flight_keeps_every_acknowledged_write(sqlite_url):
    # Given writes in flight on one event loop (group commit) when the manager is closed
    sm = StateManager.from_url(sqlite_url)
    await sm.set("s", "warm", 1)
    before = [sm.set("s", f"a{i:03d}", i) for i in range(50)]
    after = [sm.set("s", f"b{i:03d}", i) for i in range(50)]
    results = await asyncio.gather(*before, sm.aclose(), *after, return_exceptions=True)
    # Then every call either returned (acknowledged) or raised StateClosedError; none hung or failed otherwise
    keys = [f"a{i:03d}" for i in range(50)] + ["close"] + [f"b{i:03d}" for i in range(50)]
    acknowledged = []
    for key, result in zip(keys, results, strict=True):
        if key == "close":
            assert result is None
        elif isinstance(result, BaseException):
            assert isinstance(result, StateClosedError), (key, result)
        else:
            acknowledged.append(key)
    # And every acknowledged write is in the file
    async with StateManager.from_url(sqlite_url) as reopened:
        stored = set(await reopened.keys("s"))
    assert set(acknowledged) <= stored


def test_close_from_another_thread_keeps_every_acknowledged_write(sqlite_url):
    # Given threads writing one key after another, each on its own event loop, into one SQLite store
    sm = StateManager.from_url(sqlite_url)
    enough = threading.Barrier(4)  # three writers that each wrote 50 keys, and the closing thread
    acknowledged: list[list[str]] = [[], [], []]
    refused: list[BaseException] = []

    async def write(number: int) -> None:
        index = 0
        while True:
            key = f"t{number}-{index:05d}"
            try:
                await sm.set("s", key, index)
            except StateClosedError as exc:
                refused.append(exc)
                return
            acknowledged[number].append(key)
            index += 1
            if index == 50:
                await asyncio.to_thread(enough.wait, 60)

    threads = [threading.Thread(target=asyncio.run, args=(write(number),)) for number in range(3)]
    for thread in threads:
        thread.start()
    # When the manager is closed from this thread while they write
    enough.wait(60)
    asyncio.run(sm.aclose())
    for thread in threads:
        thread.join(timeout=60)
    # Then every writer stopped on StateClosedError (none hung or failed otherwise)
    assert not any(thread.is_alive() for thread in threads)
    assert len(refused) == 3

    # And every acknowledged write is in the file
    async def stored() -> set[str]:
        async with StateManager.from_url(sqlite_url) as reopened:
            return set(await reopened.keys("s"))

    assert {key for keys in acknowledged for key in keys} <= asyncio.run(stored())
