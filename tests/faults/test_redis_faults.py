"""Real faults of a Redis server under a running store: the server at ``maxmemory`` (with ``noeviction``), its
function library flushed (``FUNCTION FLUSH``), both at once. Each test uses a private ``redis-server``
(``tests/redis_server.py``), never the shared one, since the faults are server-wide.

What every test asserts: the caller gets a clear :class:`~motia.MotiaError` (never a raw redis-py exception),
nothing acknowledged is lost, and once the fault clears the same manager works again without being reopened.
(Redis SIGKILLed and restarted mid-write, with an append-only file, is
``tests/state/test_redis_backend.py::test_sigkill_and_restart_of_an_aof_server_under_load_keeps_every_acknowledged_write``
for the store and ``tests/e2e/test_redis_restart_e2e.py`` for a running app.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from motia import MotiaError, StateBackendError, StateManager
from motia.state.backends.base import NewDelivery, Subscription
from motia.state.backends.redis.client import library
from tests.redis_server import RedisServer


@pytest.fixture
def server(redis_server_factory) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """A raw client for injecting the fault (CONFIG SET, FUNCTION FLUSH) and looking at the server."""
    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        yield client


def fill_memory_to_the_limit(admin: redis.Redis) -> None:
    """``maxmemory`` below what the server already uses, with no eviction: every write is refused."""
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", "1")


def lift_the_limit(admin: redis.Redis) -> None:
    admin.config_set("maxmemory", "0")


def assert_clear_out_of_memory_error(exc: BaseException, server: RedisServer) -> None:
    assert isinstance(exc, StateBackendError), repr(exc)
    assert not isinstance(exc, redis.RedisError), repr(exc)
    message = str(exc)
    assert "out of memory" in message and "maxmemory" in message, message
    assert f"127.0.0.1:{server.port}" in message, message
    assert isinstance(exc.__cause__, redis.exceptions.OutOfMemoryError), repr(exc.__cause__)


def function_loads(admin: redis.Redis) -> int:
    """How many FUNCTION LOAD commands the server has run."""
    stats = admin.info("commandstats")
    return int(stats.get("cmdstat_function|load", {}).get("calls", 0))


# -- maxmemory ------------------------------------------------------------------------------------------------------


async def test_at_maxmemory_writes_fail_clearly_reads_go_on_and_writes_resume_once_memory_is_raised(server, admin):
    url = f"{server.url}?prefix=full&timeout=2"
    async with StateManager.from_url(url) as sm:
        # Given a store with acknowledged writes and a pending delivery
        await sm.backend.enable_events()
        for i in range(20):
            await sm.set("orders", f"o{i:02d}", {"n": i})
        await sm.backend.dispatch_events([Subscription("watch", "orders")])
        # When the server runs out of memory (maxmemory reached, noeviction)
        fill_memory_to_the_limit(admin)
        try:
            # Then every kind of write fails at once with a clear StateBackendError naming it and the cause
            writes = {
                "set": lambda: sm.set("orders", "o00", {"n": -1}),
                "update": lambda: sm.update("orders", "o01", [{"type": "increment", "path": "n", "value": 100}]),
                "delete": lambda: sm.delete("orders", "o02"),
                "clear": lambda: sm.clear("orders"),
                "commit": lambda: sm.set_many("orders", {"o03": 0, "new": 1}),
                "enqueue": lambda: sm.backend.enqueue([NewDelivery("m1", "worker", "queue", b"{}")]),
                "claim": lambda: sm.backend.claim(["watch"], owner="me", limit=5, lease=30),
            }
            for name, write in writes.items():
                with pytest.raises(MotiaError, match=name) as excinfo:
                    await write()
                assert_clear_out_of_memory_error(excinfo.value, server)
            # And reads keep working, also while refused writes are in the same pipelined batch
            results: list[Any] = list(
                await asyncio.gather(
                    sm.get("orders", "o05"),
                    sm.set("orders", "o05", {"n": "lost"}),
                    sm.get("orders", "o06"),
                    sm.items("orders", limit=3),
                    sm.count("orders"),
                    sm.backend.pending("watch"),
                    return_exceptions=True,
                )
            )
            assert results[0] == {"n": 5}
            assert_clear_out_of_memory_error(results[1], server)
            assert results[2] == {"n": 6}
            assert [entry.key for entry in results[3]] == ["o00", "o01", "o02"]
            assert results[4:] == [20, 20]
        finally:
            # When memory is raised again
            lift_the_limit(admin)
        # Then the same manager writes again, and nothing acknowledged was lost or changed by a refused write
        await sm.set("orders", "after", {"n": 99})
        assert {entry.key: entry.value for entry in await sm.items("orders")} == {
            **{f"o{i:02d}": {"n": i} for i in range(20)},
            "after": {"n": 99},
        }
        claimed = await sm.backend.claim(["watch"], owner="me", limit=100, lease=30)
        assert len(claimed) == 20


# -- the function library flushed ---------------------------------------------------------------------------------


async def test_function_flush_mid_run_reloads_the_library_once_and_every_call_goes_on(server, admin):
    async with StateManager.from_url(f"{server.url}?prefix=flush") as sm:
        await sm.set("c", "n", {"n": 0})
        loads_before = function_loads(admin)
        # Given 50 tasks incrementing one counter concurrently (their calls go out in pipelined batches)
        flushed = asyncio.Event()
        paused = 0
        all_paused = asyncio.Event()

        async def worker() -> None:
            nonlocal paused
            for i in range(20):
                if i == 5:  # each stops mid-run, after 5 increments, until the flush
                    paused += 1
                    if paused == 50:
                        all_paused.set()
                    await flushed.wait()
                await sm.update("c", "n", [{"type": "increment", "path": "n", "value": 1}])

        tasks = [asyncio.create_task(worker()) for _ in range(50)]
        # When the library is flushed while they run (every task has made calls and has more to make)
        await all_paused.wait()
        admin.function_flush()
        flushed.set()
        await asyncio.gather(*tasks)
        # Then every increment landed exactly once
        assert await sm.get("c", "n") == {"n": 1000}
        # And the library was loaded again, once for the loop, not once per caller
        assert 1 <= function_loads(admin) - loads_before <= 2


async def test_function_flush_with_the_server_at_maxmemory_is_a_clear_error_within_the_timeout(server, admin):
    async with StateManager.from_url(f"{server.url}?prefix=flushfull&timeout=2") as sm:
        await sm.set("s", "k", {"n": 1})
        # Given the library is gone and the server cannot load it again (out of memory)
        admin.function_flush()
        fill_memory_to_the_limit(admin)
        try:
            # When a write needs the library
            with pytest.raises(MotiaError) as excinfo:
                await asyncio.wait_for(sm.set("s", "k", {"n": 2}), timeout=30)
            # Then it is a clear StateBackendError naming the cause, not redis-py's OutOfMemoryError
            assert_clear_out_of_memory_error(excinfo.value, server)
            assert "function library" in str(excinfo.value)
            # And reads that need no function keep working
            assert await sm.get("s", "k") == {"n": 1}
        finally:
            lift_the_limit(admin)
        # And once memory is raised the library is loaded again and writes resume
        await sm.set("s", "k", {"n": 3})
        assert await sm.get("s", "k") == {"n": 3}
        assert admin.function_list(library=library()[0]) != []
