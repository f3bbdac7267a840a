"""Tailing the Redis stream log (SPEC 10.4 "every instance, every process"): several instances (backends) on one
Redis server each see every change in commit order, a waiting tail wakes at once for a change committed by any
instance, a cancelled or closed wait leaves nothing behind, and the log survives FUNCTION FLUSH and restarts.

Each instance here is a ``RedisBackend`` of its own (its own connections), as two ``motia run`` processes would be.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator

import orjson
import pytest
import redis

from motia import MotiaError, StateClosedError
from motia.state.backends.redis import RedisBackend
from motia.state.backends.types import StreamChange
from tests.polling import eventually
from tests.redis_server import RedisServer

#: A wait far longer than any test: a tail that returns in time was woken, not timed out.
LONG = 30.0
#: How soon a waiting tail must wake for a change (generous for a loaded 2-core machine; typically ~1 ms).
PROMPT = 2.0


@pytest.fixture
def server(redis_server_factory) -> RedisServer:
    return redis_server_factory()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    """A raw client for looking at the server and injecting faults."""
    with redis.Redis(host="127.0.0.1", port=server.port) as client:
        yield client


def blocked_readers(admin: redis.Redis) -> int:
    """Clients the server holds in a blocking XREAD."""
    return sum(1 for client in admin.client_list() if client["cmd"] == "xread" and "b" in client["flags"])


async def collect(store: RedisBackend, after: int, count: int) -> list[StreamChange]:
    """Tail from ``after`` until ``count`` changes came, as the runtime's hub does."""
    seen: list[StreamChange] = []
    while len(seen) < count:
        batch = await store.stream_tail(after, limit=7, wait=LONG)
        assert batch, "a tail waited its whole wait while changes were still to come"
        seen += batch
        after = batch[-1].position
    return seen


def assert_commit_order(changes: list[StreamChange]) -> None:
    """Positions consecutive from 1, and each group's seqs 1, 2, 3... in position order."""
    assert [change.position for change in changes] == list(range(1, len(changes) + 1))
    seqs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for change in changes:
        seqs[(change.stream, change.group)].append(change.seq)
    for group, numbers in seqs.items():
        assert numbers == list(range(1, len(numbers) + 1)), group


async def test_changes_through_two_instances_reach_each_instance_tail_in_seq_order(server: RedisServer) -> None:
    # Given two instances on one store, each tailing the log from the start
    first = RedisBackend(f"{server.url}?prefix=app")
    second = RedisBackend(f"{server.url}?prefix=app")
    per_writer = 60
    try:
        tails = [asyncio.ensure_future(collect(store, 0, 2 * per_writer)) for store in (first, second)]

        # When both write concurrently to the same groups (and send events), 20 tasks at a time
        async def write(store: RedisBackend, name: str) -> None:
            async def one(n: int) -> None:
                group = f"g{n % 3}"
                if n % 4 == 3:
                    await store.stream_send("todo", group, None, orjson.dumps({"type": name, "data": n}), history=500)
                else:
                    await store.stream_write(
                        "todo", group, f"{name}-{n % 5}", orjson.dumps({"n": n}), if_version=None, history=500
                    )

            for start in range(0, per_writer, 20):
                await asyncio.gather(*(one(n) for n in range(start, start + 20)))

        await asyncio.gather(write(first, "a"), write(second, "b"))
        seen_first, seen_second = await asyncio.wait_for(asyncio.gather(*tails), LONG)
        # Then each instance saw every change once, in commit order, each group's seqs in order
        assert seen_first == seen_second
        assert_commit_order(seen_first)
        assert {change.new_data for change in seen_first} >= {orjson.dumps({"n": 0})}
        # And what the tail said is what each group's history says
        for group in ("g0", "g1", "g2"):
            history = await first.stream_history("todo", group, after=0, limit=1000)
            assert history == [change for change in seen_first if change.group == group]
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize("writer", ["another instance", "this instance"])
async def test_a_waiting_tail_wakes_at_once_for_a_change_of_any_instance(
    server: RedisServer, admin: redis.Redis, writer: str
) -> None:
    # Given an instance waiting on the log (held by the server in a blocking read)
    tailing = RedisBackend(f"{server.url}?prefix=app")
    other = RedisBackend(f"{server.url}?prefix=app")
    try:
        await tailing.stream_send("s", "g", None, b"{}", history=10)
        after = await tailing.stream_position()
        waiting = asyncio.ensure_future(tailing.stream_tail(after, limit=10, wait=LONG))
        await eventually(lambda: blocked_readers(admin) == 1, what="the tail blocked on the server")
        # When a change is committed
        store = other if writer == "another instance" else tailing
        started = time.monotonic()
        change = await store.stream_write("s", "g", "i", b'{"id":"i"}', if_version=None, history=10)
        # Then the tail returns it at once, not after its wait
        changes = await asyncio.wait_for(waiting, LONG)
        assert time.monotonic() - started < PROMPT
        assert changes == [change]
    finally:
        await tailing.aclose()
        await other.aclose()


async def test_a_waiting_tail_does_not_hold_up_other_calls_of_its_loop(server: RedisServer, admin: redis.Redis) -> None:
    # Given a tail waiting on the log
    store = RedisBackend(f"{server.url}?prefix=app")
    try:
        waiting = asyncio.ensure_future(store.stream_tail(0, limit=10, wait=LONG))
        await eventually(lambda: blocked_readers(admin) == 1, what="the tail blocked on the server")
        # When the same loop reads and writes, many calls at once (pipelined)
        started = time.monotonic()
        await asyncio.gather(*(store.set("s", f"k{n}", b"1", ttl=None, if_version=None) for n in range(50)))
        assert len(await store.items("s", prefix=None, after=None, limit=None)) == 50
        # Then they complete without waiting for the tail, which still waits
        assert time.monotonic() - started < PROMPT
        assert not waiting.done()
        waiting.cancel()
    finally:
        await store.aclose()


async def test_a_cancelled_wait_leaves_the_store_usable_and_no_connection_behind(
    server: RedisServer, admin: redis.Redis
) -> None:
    store = RedisBackend(f"{server.url}?prefix=app")
    try:
        await store.stream_send("s", "g", None, b"{}", history=10)
        baseline = len(admin.client_list())
        # Given waits cancelled while the server holds them, many times over
        for _ in range(20):
            waiting = asyncio.ensure_future(store.stream_tail(1, limit=10, wait=LONG))
            await eventually(lambda: blocked_readers(admin) == 1, what="the tail blocked on the server")
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            # Then the server no longer holds it, and no connection is left open for it
            await eventually(lambda: blocked_readers(admin) == 0, what="the cancelled read dropped")
        await eventually(lambda: len(admin.client_list()) <= baseline, what="connections back to the baseline")
        # And the store still writes, reads and tails, a new wait included
        waiting = asyncio.ensure_future(store.stream_tail(1, limit=10, wait=LONG))
        change = await store.stream_write("s", "g", "i", b'{"id":"i"}', if_version=None, history=10)
        assert await asyncio.wait_for(waiting, LONG) == [change]
        assert (await store.stream_snapshot("s", "g", None))[0] == 2
    finally:
        await store.aclose()


async def test_closing_the_store_ends_a_waiting_tail_with_a_clear_error(
    server: RedisServer, admin: redis.Redis
) -> None:
    # Given a tail waiting on the log
    store = RedisBackend(f"{server.url}?prefix=app")
    waiting = asyncio.ensure_future(store.stream_tail(0, limit=10, wait=LONG))
    await eventually(lambda: blocked_readers(admin) == 1, what="the tail blocked on the server")
    # When the store is closed
    await store.aclose()
    # Then the tail ends at once with the store's "closed" error, not a driver error or a hang
    with pytest.raises(StateClosedError):
        await asyncio.wait_for(waiting, PROMPT)
    with pytest.raises(StateClosedError):
        await store.stream_tail(0, limit=10, wait=0)


async def test_stream_changes_work_after_function_flush(server: RedisServer, admin: redis.Redis) -> None:
    # Given a store with a change, whose server then loses the function library
    store = RedisBackend(f"{server.url}?prefix=app")
    try:
        await store.stream_write("s", "g", "i", b'{"id":"i","n":1}', if_version=None, history=10)
        admin.function_flush()
        # When it writes (a change is a library function)
        change = await store.stream_write("s", "g", "i", b'{"id":"i","n":2}', if_version=1, history=10)
        # Then the library was loaded again and the change recorded after the first
        assert change is not None and (change.seq, change.position, change.kind) == (2, 2, "update")
        admin.function_flush()
        sent = await store.stream_send("s", "g", None, b"{}", history=10)
        assert (sent.seq, sent.position) == (3, 3)
        # And the reads that are library functions work too
        admin.function_flush()
        assert (await store.stream_snapshot("s", "g", None))[0] == 3
        admin.function_flush()
        assert [c.seq for c in await store.stream_history("s", "g", after=0, limit=10) or []] == [1, 2, 3]
    finally:
        await store.aclose()


async def test_positions_and_seqs_keep_counting_across_restarts_of_the_client(server: RedisServer) -> None:
    # Given changes made by one client, which then closes
    url = f"{server.url}?prefix=app"
    before = RedisBackend(url)
    for n in range(3):
        await before.stream_send("s", "g", None, orjson.dumps({"type": "n", "data": n}), history=100)
    await before.stream_write("s", "h", "i", b"{}", if_version=None, history=100)
    await before.aclose()
    # When a new client (a restarted instance) tails from where the old one was and makes more changes
    after = RedisBackend(url)
    try:
        assert await after.stream_position() == 4
        waiting = asyncio.ensure_future(after.stream_tail(4, limit=10, wait=LONG))
        more = [await after.stream_send("s", "g", None, b"{}", history=100)]
        assert [c.position for c in await asyncio.wait_for(waiting, LONG)] == [5]
        more.append(await after.stream_send("s", "g", None, b"{}", history=100))
        # Then positions and the group's seqs continue, never repeating
        assert [(c.position, c.seq) for c in more] == [(5, 4), (6, 5)]
        tail = await after.stream_tail(0, limit=100, wait=0)
        assert [c.position for c in tail] == [1, 2, 3, 4, 5, 6]
        assert_commit_order(tail)
    finally:
        await after.aclose()


async def test_positions_keep_counting_across_a_restart_of_the_server(redis_server_factory) -> None:
    # Given a durable server (append-only file) with changes in its log
    server: RedisServer = redis_server_factory(appendonly=True)
    store = RedisBackend(f"{server.url}?prefix=app")
    try:
        for _ in range(3):
            await store.stream_send("s", "g", None, b"{}", history=100)
        # When the server restarts
        server.restart()
        # Then the same client goes on numbering after the last change, and the log and history are intact
        change = await store.stream_send("s", "g", None, b"{}", history=100)
        assert (change.position, change.seq) == (4, 4)
        assert [c.position for c in await store.stream_tail(0, limit=10, wait=0)] == [1, 2, 3, 4]
        assert [c.seq for c in await store.stream_history("s", "g", after=1, limit=10) or []] == [2, 3, 4]
    finally:
        await store.aclose()


async def test_a_tail_waiting_through_a_server_restart_ends_without_an_error_and_tails_on(
    redis_server_factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a durable server, and a tail waiting on its log
    server: RedisServer = redis_server_factory(appendonly=True)
    store = RedisBackend(f"{server.url}?prefix=app")
    try:
        await store.stream_send("s", "g", None, b"{}", history=10)
        waiting = asyncio.ensure_future(store.stream_tail(1, limit=10, wait=LONG))
        with redis.Redis(host="127.0.0.1", port=server.port) as admin:
            await eventually(lambda: blocked_readers(admin) == 1, what="the tail blocked on the server")
        # When the server restarts under it
        server.restart()
        # Then the wait ends early with nothing (a warning logged), not with an error
        assert await asyncio.wait_for(waiting, LONG) == []
        assert "waiting for stream changes" in caplog.text
        # And the next change reaches the next wait
        waiting = asyncio.ensure_future(store.stream_tail(1, limit=10, wait=LONG))
        change = await store.stream_send("s", "g", None, b"{}", history=10)
        assert await asyncio.wait_for(waiting, LONG) == [change] and change.position == 2
    finally:
        await store.aclose()


async def test_a_tail_on_a_stopped_server_fails_with_a_motia_error(server: RedisServer) -> None:
    # Given a store whose server goes away
    store = RedisBackend(f"{server.url}?prefix=app&timeout=1")
    try:
        await store.stream_send("s", "g", None, b"{}", history=10)
        server.stop()
        # Then tailing raises pymotia's error (the hub logs it and tries again), never a driver error
        with pytest.raises(MotiaError):
            await store.stream_tail(1, limit=10, wait=0.5)
    finally:
        await store.aclose()
