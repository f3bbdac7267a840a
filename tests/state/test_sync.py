"""The synchronous twin (SPEC 1): same methods, blocking, usable from any thread, never "cannot call from the
event loop"."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

from motia import (
    InvalidUpdateError,
    StateClosedError,
    StateConflictError,
    StateEntry,
    StateManager,
    StateSetResult,
    StateValueError,
    SyncStateManager,
)

INC = [{"type": "increment", "path": "n", "value": 1}]

THREADS = 8
UPDATES_PER_THREAD = 100


def exercise_every_method(sm: SyncStateManager) -> None:
    """Runs every method once and checks its result (called from various threads)."""
    result = sm.set("s", "b", {"a": 1})
    assert isinstance(result, StateSetResult)
    assert result.old_value is None
    assert result["new_value"] == {"a": 1}
    assert result.version == 1
    assert sm.get("s", "b") == {"a": 1}
    assert sm.get("s", "missing") is None
    result = sm.update("s", "b", [{"type": "increment", "path": "n", "value": 2}])
    assert result.old_value == {"a": 1}
    assert result.new_value == {"a": 1, "n": 2}
    assert result.version == 2
    sm.set("s", "a", [1])
    sm.set("t", "x", "y", ttl=60)
    assert sm.list("s") == [[1], {"a": 1, "n": 2}]
    assert sm.list_groups() == ["s", "t"]
    entry = sm.get_entry("s", "b")
    assert isinstance(entry, StateEntry)
    assert (entry.key, entry.value, entry.version, entry.expires_at) == ("b", {"a": 1, "n": 2}, 2, None)
    assert sm.get_entry("t", "x").expires_at is not None  # type: ignore[union-attr]
    assert [e.key for e in sm.items("s")] == ["a", "b"]
    assert [e.key for e in sm.items("s", prefix="b")] == ["b"]
    assert sm.keys("s", after="a") == ["b"]
    assert sm.keys("s", limit=1) == ["a"]
    assert sm.count("s") == 2
    assert sm.delete("s", "a") == [1]
    assert sm.delete("s", "a") is None
    assert sm.purge_expired() == 0
    assert sm.clear("t") is None  # type: ignore[func-returns-value]
    assert sm.list_groups() == ["s"]
    assert sm.trace_ids() == ["s"]  # Motia 0.x's names
    assert sm.get_group("s") == sm.list("s") and sm.get_group("t") == []
    with pytest.raises(StateConflictError):
        sm.set("s", "b", 0, if_version=1)
    with pytest.raises(StateValueError):
        sm.set("", "k", 1)
    with pytest.raises(InvalidUpdateError):
        sm.update("s", "b", [{"type": "increment", "path": "a.x"}])
    assert sm.get_entry("s", "b").version == 2  # type: ignore[union-attr]


def run_in_thread(fn: Callable[[], Any]) -> Any:
    """Runs fn in a fresh thread and returns its result (re-raising its exception)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "thread hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def test_every_method_from_the_main_thread(backend_url):
    # Given a sync manager in a plain (non-async) test
    with SyncStateManager.from_url(backend_url) as sm:
        # Then every method works and returns the same shapes as the async manager
        exercise_every_method(sm)


def test_every_method_from_a_plain_thread(backend_url):
    def work() -> None:
        with SyncStateManager.from_url(backend_url) as sm:
            exercise_every_method(sm)

    run_in_thread(work)


def test_manager_created_in_one_thread_used_in_another(backend_url):
    # Given a sync manager opened in the main thread
    sm = SyncStateManager.from_url(backend_url)
    try:
        # When another thread uses it
        run_in_thread(lambda: sm.set("s", "k", 1))
        # Then the write is visible from the main thread
        assert sm.get("s", "k") == 1
        assert run_in_thread(lambda: sm.get("s", "k")) == 1
    finally:
        sm.close()


async def test_sync_manager_inside_a_running_event_loop(backend_url):
    # Given a running event loop in this thread (this test is async)
    asyncio.get_running_loop()

    def sync_handler() -> Any:
        # When a plain sync function (like a sync step handler) uses the sync manager
        with SyncStateManager.from_url(backend_url) as sm:
            exercise_every_method(sm)
            sm.update("h", "k", INC)
            return sm.get("h", "k")

    # Then it works and never raises "cannot call from the event loop"
    assert sync_handler() == {"n": 1}


async def test_sync_manager_in_loop_thread_sees_async_writes(sqlite_url):
    # Given an async manager and a sync manager on the same SQLite file, both used from the loop thread
    async with StateManager.from_url(sqlite_url) as async_sm:
        with SyncStateManager.from_url(sqlite_url) as sync_sm:
            # When each writes, interleaved
            await async_sm.set("s", "a", 1)
            sync_sm.set("s", "b", 2)
            await async_sm.update("s", "c", INC)
            sync_sm.update("s", "c", INC)
            # Then each sees the other's writes
            assert sync_sm.get("s", "a") == 1
            assert await async_sm.get("s", "b") == 2
            assert await async_sm.get("s", "c") == {"n": 2}
            assert sync_sm.get_entry("s", "c").version == 2  # type: ignore[union-attr]
            assert sync_sm.list("s") == [1, 2, {"n": 2}]


async def test_sync_manager_while_the_loop_is_busy_with_async_state_work(sqlite_url):
    # Given async state work in flight on the running loop
    async with StateManager.from_url(sqlite_url) as async_sm:
        tasks = [asyncio.create_task(async_sm.update("s", "async", INC)) for _ in range(20)]
        # When a sync call is made from the loop thread in the middle of it
        with SyncStateManager.from_url(sqlite_url) as sync_sm:
            sync_sm.update("s", "sync", INC)
            assert sync_sm.get("s", "sync") == {"n": 1}
        await asyncio.gather(*tasks)
        # Then both finished correctly
        assert await async_sm.get("s", "async") == {"n": 20}
        assert await async_sm.get("s", "sync") == {"n": 1}


def test_sync_closed_manager_raises(backend_url):
    sm = SyncStateManager.from_url(backend_url)
    sm.set("s", "k", 1)
    sm.close()
    for call in (
        lambda: sm.get("s", "k"),
        lambda: sm.set("s", "k", 2),
        lambda: sm.update("s", "k", INC),
        lambda: sm.delete("s", "k"),
        lambda: sm.list("s"),
        lambda: sm.clear("s"),
        lambda: sm.list_groups(),
        lambda: sm.get_entry("s", "k"),
        lambda: sm.items("s"),
        lambda: sm.keys("s"),
        lambda: sm.count("s"),
        lambda: sm.purge_expired(),
    ):
        with pytest.raises(StateClosedError):
            call()


def test_sync_with_closes_on_exit(backend_url):
    with SyncStateManager.from_url(backend_url) as sm:
        sm.set("s", "k", 1)
    with pytest.raises(StateClosedError):
        sm.get("s", "k")


def test_sync_clock_option_drives_ttl(backend_url, clock):
    with SyncStateManager.from_url(backend_url, clock=clock) as sm:
        sm.set("s", "k", 1, ttl=10)
        assert sm.get_entry("s", "k").expires_at == pytest.approx(clock() + 10)  # type: ignore[union-attr]
        sm.set("s", "perm", 2)
        clock.advance(11)
        assert sm.purge_expired() == 1
        assert sm.get("s", "k") is None
        assert sm.list("s") == [2]


def _hammer(sm: SyncStateManager, barrier: threading.Barrier, seen: list[int]) -> None:
    barrier.wait(timeout=60)
    for _ in range(UPDATES_PER_THREAD):
        seen.append(sm.update("c", "shared", INC).new_value["n"])


def _run_threads(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guard(fn)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "threads hung"
    if errors:
        raise errors[0]


def test_threads_sharing_one_sync_manager_lose_no_update(backend_url):
    # Given one sync manager shared by several threads, started together
    barrier = threading.Barrier(THREADS)
    seen: list[int] = []
    with SyncStateManager.from_url(backend_url) as sm:
        # When each thread increments the same key M times
        _run_threads([lambda: _hammer(sm, barrier, seen) for _ in range(THREADS)])
        # Then the total is exact and every increment saw a distinct value
        total = THREADS * UPDATES_PER_THREAD
        assert sm.get("c", "shared") == {"n": total}
        assert sm.get_entry("c", "shared").version == total  # type: ignore[union-attr]
        assert sorted(seen) == list(range(1, total + 1))


def test_threads_each_with_own_sync_manager_on_one_sqlite_file_lose_no_update(sqlite_url):
    # Given one sync manager per thread, all on the same SQLite file
    barrier = threading.Barrier(THREADS)
    seen: list[int] = []
    managers = [SyncStateManager.from_url(sqlite_url) for _ in range(THREADS)]
    try:
        # When each thread increments the same key M times through its own manager
        _run_threads([lambda sm=sm: _hammer(sm, barrier, seen) for sm in managers])  # type: ignore[misc]
    finally:
        for sm in managers:
            sm.close()
    # Then the total is exact
    total = THREADS * UPDATES_PER_THREAD
    with SyncStateManager.from_url(sqlite_url) as sm:
        assert sm.get("c", "shared") == {"n": total}
        assert sm.get_entry("c", "shared").version == total  # type: ignore[union-attr]
    assert sorted(seen) == list(range(1, total + 1))


async def test_threads_with_sync_manager_while_async_tasks_update_same_key(sqlite_url):
    # Given async tasks on the loop and threads with sync managers, all incrementing one key
    barrier = threading.Barrier(4)
    seen: list[int] = []
    managers = [SyncStateManager.from_url(sqlite_url) for _ in range(3)]
    try:
        async with StateManager.from_url(sqlite_url) as async_sm:

            async def async_worker() -> None:
                await asyncio.to_thread(barrier.wait, 60)
                for _ in range(UPDATES_PER_THREAD):
                    seen.append((await async_sm.update("c", "shared", INC)).new_value["n"])

            threads_done = asyncio.to_thread(
                _run_threads,
                [lambda sm=sm: _hammer(sm, barrier, seen) for sm in managers],  # type: ignore[misc]
            )
            await asyncio.gather(async_worker(), threads_done)
            # Then nothing was lost
            total = 4 * UPDATES_PER_THREAD
            assert await async_sm.get("c", "shared") == {"n": total}
    finally:
        for sm in managers:
            sm.close()
    assert sorted(seen) == list(range(1, total + 1))


def _run_script(code: str, env: dict[str, str], cwd: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


MODULE_TWIN_SCRIPT = """
import asyncio
from motia import stateManager

stateManager.set("s", "plain", {"n": 1})
print(stateManager.get("s", "plain"))

async def handler():
    # a sync call from inside a running event loop, as in an async step that uses the module-level twin
    stateManager.update("s", "in-loop", [{"type": "increment", "path": "n", "value": 2}])
    return stateManager.get("s", "in-loop")

print(asyncio.run(handler()))
"""


def test_module_level_state_manager_uses_motia_state_url(tmp_path, child_env):
    # Given MOTIA_STATE_URL pointing at a SQLite file, in a plain script
    db = tmp_path / "from-env.db"
    env = {**child_env, "MOTIA_STATE_URL": f"sqlite:///{db}"}
    # When the module-level stateManager is used, also from inside a running loop
    out = _run_script(MODULE_TWIN_SCRIPT, env, str(tmp_path))
    # Then it works and the data is in that file
    assert out.splitlines() == ["{'n': 1}", "{'n': 2}"]
    with SyncStateManager.from_url(f"sqlite:///{db}") as sm:
        assert sm.get("s", "plain") == {"n": 1}
        assert sm.get("s", "in-loop") == {"n": 2}


def test_module_level_state_manager_defaults_to_motia_state_db_in_the_cwd(tmp_path, child_env):
    # Given no MOTIA_STATE_URL, in a project directory
    env = {k: v for k, v in child_env.items() if k != "MOTIA_STATE_URL"}
    out = _run_script(MODULE_TWIN_SCRIPT, env, str(tmp_path))
    # Then the default SQLite file .motia/state.db is used
    assert out.splitlines() == ["{'n': 1}", "{'n': 2}"]
    db = tmp_path / ".motia" / "state.db"
    assert db.is_file()
    with SyncStateManager.from_url(f"sqlite:///{db}") as sm:
        assert sm.get("s", "plain") == {"n": 1}
