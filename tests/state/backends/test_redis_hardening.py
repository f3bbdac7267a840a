"""Redis backend hardening (issue 11): per-loop clients released with their loop, a lost ``claim`` reply
answered again instead of claiming twice, one bad call failing only itself in a pipelined batch, dead
letters read in proportion to the page asked for, and a clear refusal of Redis Cluster.

Real ``redis-server`` processes only (``tests/redis_server.py``); faults of the whole server (maxmemory,
``FUNCTION FLUSH``) are in ``tests/faults/test_redis_faults.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis

from motia import StateBackendUnavailable, StateManager, StateValueError
from motia.state.backends.base import NewDelivery
from tests.redis_server import RedisServer
from tests.server_process import free_port
from tests.state.backends.test_redis import ReplyDroppingProxy


def connected_clients(server: RedisServer) -> int:
    """Clients connected to the server, not counting the connection asking."""
    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        return int(admin.info("clients")["connected_clients"]) - 1


# -- a client per event loop, released with its loop (#9) -----------------------------------------------------------


def test_a_store_used_from_many_short_lived_loops_keeps_its_connections_bounded(redis_server_factory):
    # Given a store opened once (as a script or `motia state` does) on a private server
    server = redis_server_factory()
    sm = StateManager.from_url(f"{server.url}?prefix=loops")
    try:
        asyncio.run(sm.set("s", "k", {"n": 1}))
        before = connected_clients(server)
        # When 200 short-lived event loops each make a call (asyncio.run closes its loop at the end)
        for _ in range(200):
            assert asyncio.run(sm.get("s", "k")) == {"n": 1}
        # Then the connections of the closed loops were released: none is left open
        assert connected_clients(server) <= before <= 1
        # And the store still works, from yet another loop
        assert asyncio.run(sm.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])).new_value == {"n": 2}
    finally:
        asyncio.run(sm.aclose())
    assert connected_clients(server) == 0


def test_a_loop_run_by_hand_releases_its_client_when_it_shuts_down(redis_server_factory):
    server = redis_server_factory()
    sm = StateManager.from_url(f"{server.url}?prefix=rawloops")
    try:
        # Given loops run by hand, each shut down as asyncio.run does (async generators, then close)
        for i in range(20):
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(sm.set("s", f"k{i}", i))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
        # Then their clients were closed with them as well
        assert connected_clients(server) == 0
        assert asyncio.run(sm.count("s")) == 20
    finally:
        asyncio.run(sm.aclose())


# -- a claim whose reply was lost ------------------------------------------------------------------------------------


async def test_a_claim_whose_reply_was_lost_is_answered_again_instead_of_leaving_the_deliveries_leased(redis_server):
    proxy = ReplyDroppingProxy(redis_server.port)
    proxy.start()
    worker = StateManager.from_url(f"redis://127.0.0.1:{proxy.port}/0?prefix=lost-claim")
    watcher = StateManager.from_url(f"{redis_server.url}?prefix=lost-claim")
    try:
        # Given three queued messages
        await watcher.backend.enqueue([NewDelivery(f"m{i}", "worker", "queue", b"{}") for i in range(3)])
        assert await worker.backend.pending("worker") == 3  # the worker's connection is made (and its set-up done)
        # When the reply to the claim is lost after Redis applied it, and the claim is retried
        proxy.armed = True
        claimed = await worker.backend.claim(["worker"], owner="w1", limit=10, lease=60)
        assert proxy.dropped.is_set()
        # Then the retry returns what the first attempt leased (not nothing, leased for 60 s to nobody's knowledge)
        assert sorted(d.id for d in claimed) == ["m0", "m1", "m2"]
        # And the attempt was counted once
        assert [d.attempts for d in claimed] == [1, 1, 1]
        for delivery in claimed:
            assert await worker.backend.complete(delivery.id, owner="w1")
        assert await watcher.backend.pending("worker") == 0
    finally:
        await worker.aclose()
        await watcher.aclose()
        proxy.close()


async def test_a_retried_claim_does_not_hand_back_a_delivery_settled_in_between(redis_server):
    # A retry answered from the claim's marker returns only what the owner still holds.
    async with StateManager.from_url(f"{redis_server.url}?prefix=claim-settled") as sm:
        backend: Any = sm.backend  # the Redis backend's private write path
        await backend.enqueue([NewDelivery(f"m{i}", "worker", "queue", b"{}") for i in range(2)])
        token, now = backend._token(), repr(time.time())
        first = await backend._write("motia1_claim", token, "w1", 10, "60.0", now, "worker")
        assert len(first) == 12
        assert await backend.complete("m0", owner="w1")
        again = await backend._write("motia1_claim", token, "w1", 10, "60.0", now, "worker")
        assert [again[i] for i in range(0, len(again), 6)] == [b"m1"]


# -- one call's failure in a pipelined batch fails that call only (#2 on Redis) --------------------------------------


async def test_an_argument_redis_cannot_take_fails_only_its_own_call_in_a_batch(redis_url):
    async with StateManager.from_url(redis_url) as sm:
        # Given five writes and one call with a job name holding a lone surrogate, all in flight at once
        calls: list[Any] = [sm.set("s", f"k{i}", i) for i in range(3)]
        calls.append(sm.backend.claim_tick("job-\ud800", 1_700_000_000.0, hold=10))
        calls += [sm.set("s", f"k{i}", i) for i in range(3, 5)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        # Then that call fails with a clear StateValueError, and every other call succeeded
        assert isinstance(results[3], StateValueError), repr(results[3])
        assert "surrogate" in str(results[3])
        assert [r for i, r in enumerate(results) if i != 3 and isinstance(r, BaseException)] == []
        assert await sm.items("s") and await sm.count("s") == 5


async def test_a_delivery_error_text_with_a_lone_surrogate_is_recorded_not_refused(redis_url):
    # An exception message may hold lone surrogates (e.g. a file name decoded with surrogateescape).
    async with StateManager.from_url(redis_url) as sm:
        backend = sm.backend
        await backend.enqueue([NewDelivery("m1", "worker", "queue", b"{}")])
        (delivery,) = await backend.claim(["worker"], owner="w", limit=1, lease=60)
        assert await backend.dead_letter(delivery.id, owner="w", error="no such file: b'\udcff.txt'")
        (letter,) = await backend.dead_letters("worker")
        assert letter.error == "no such file: b'\\udcff.txt'"


@pytest.mark.parametrize("url", ["memory://", "redis"])
async def test_a_page_bound_with_a_lone_surrogate_orders_by_code_point_like_every_backend(url, redis_url):
    async with StateManager.from_url(redis_url if url == "redis" else url) as sm:
        for key in ["a", "z", "\ud7ffx", "\ue000x"]:
            await sm.set("s", key, 1)
        # Then a prefix holding a lone surrogate matches no key, and an "after" holding one sorts by code point
        assert await sm.keys("s", prefix="\ud800") == []
        assert await sm.keys("s", after="\ud800") == ["\ue000x"]
        assert await sm.keys("s", after="a", prefix="\udfff") == []


# -- dead letters: a page costs about the page ------------------------------------------------------------------------


async def test_reading_a_page_of_dead_letters_does_not_read_the_whole_list(redis_server_factory):
    server = redis_server_factory()
    prefix = "dead"
    # Given 10 dead letters of step "a", then 200,000 of step "b", then 3 of step "c" (the layout of issue 18:
    # a hash by id and an index by failure time)
    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        steps = [("a", 10), ("b", 200_000), ("c", 3)]
        letters = [
            (f"{step}{i}", orjson.dumps([f"{step}{i}", step, "queue", "{}", 1, "boom", "1.0", repr(2.0 + n), "boom"]))
            for n, (step, count) in enumerate(steps)
            for i in range(count)
        ]
        with admin.pipeline(transaction=False) as pipe:
            for start in range(0, len(letters), 10_000):
                chunk = letters[start : start + 10_000]
                pipe.hset(f"{{{prefix}}}:dl", mapping=dict(chunk))
                pipe.zadd(f"{{{prefix}}}:dlz", {letter_id: orjson.loads(raw)[7] for letter_id, raw in chunk})
            pipe.execute()
        async with StateManager.from_url(f"{server.url}?prefix={prefix}") as sm:
            await sm.count("warm-up")  # the library is loaded, the connection made
            admin.config_resetstat()
            # When pages are read: the oldest of all, the oldest of each step, a page after a cursor
            every = await sm.backend.dead_letters(limit=10)
            of_a = await sm.backend.dead_letters("a", limit=10)
            of_b = await sm.backend.dead_letters("b", limit=5)
            next_b = await sm.backend.dead_letter_page(step="b", after=of_b[-1].cursor, limit=5)
            stats = admin.info("commandstats")["cmdstat_fcall"]
            # (the letters of a step behind all others are found too, reading through the others)
            assert [letter.id for letter in await sm.backend.dead_letters("c")] == ["c0", "c1", "c2"]
    # Then each page is right (ids order as text within one failure time)
    assert [letter.id for letter in every] == sorted(f"a{i}" for i in range(10))
    assert [letter.id for letter in of_a] == sorted(f"a{i}" for i in range(10))
    b_ids = sorted(f"b{i}" for i in range(200_000))
    assert [letter.id for letter in of_b] == b_ids[:5]
    assert [letter.id for letter in next_b] == b_ids[5:10]
    # And the server spent about the page on each, not the 200,013 letters (reading them all takes ~100 ms)
    assert stats["calls"] == 4
    assert stats["usec_per_call"] < 10_000, stats


async def test_dead_letters_of_an_older_store_are_moved_to_the_new_layout_once(redis_server_factory):
    server = redis_server_factory()
    prefix = "old"
    # Given a store written before issue 18: dead letters in a list, their ids in a set, no first error
    old = [orjson.dumps([f"m{i}", "worker", "queue", '{"n":1}', 3, f"boom {i}", "1.0", f"{2 + i}.5"]) for i in range(3)]
    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        admin.rpush(f"{{{prefix}}}:dead", *old)
        admin.sadd(f"{{{prefix}}}:deadids", "m0", "m1", "m2")
        async with StateManager.from_url(f"{server.url}?prefix={prefix}") as sm:
            # When they are read
            letters = await sm.backend.dead_letter_page()
            # Then every one is there, in failure order, with what it had
            assert [(d.id, d.error, d.attempts, d.failed_at, d.first_error) for d in letters] == [
                (f"m{i}", f"boom {i}", 3, 2 + i + 0.5, None) for i in range(3)
            ]
            # And the old keys are gone: they are read no more
            assert admin.exists(f"{{{prefix}}}:dead", f"{{{prefix}}}:deadids") == 0
            # And they can be operated like any
            assert await sm.backend.redrive_dead_letters(["m1"]) == ["m1"]
            assert await sm.backend.purge_dead_letters(["m0"]) == ["m0"]
            assert [d.id for d in await sm.backend.dead_letter_page()] == ["m2"]
            assert [p.id for p in await sm.backend.pending_page()] == ["m1"]


# -- what is supported: a standalone server ---------------------------------------------------------------------------


def test_a_cluster_node_is_refused_at_start_up_with_a_clear_message(redis_server, tmp_path):
    # (redis_server: skips, or fails in CI, without redis-server, like every Redis test)
    cluster = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    server = RedisServer(extra_args=[*cluster, "--cluster-port", str(free_port())])  # any client port works
    try:
        with pytest.raises(StateBackendUnavailable, match="Redis Cluster is not supported") as excinfo:
            StateManager.from_url(server.url)
        assert f"127.0.0.1:{server.port}" in str(excinfo.value)
    finally:
        server.close()


# -- the function library named by its text: versions side by side -------------------------------------------------

#: A library an older pymotia could have loaded: the source's name, ``motia1``, and a ``set`` of its own.
OLDER_LIBRARY = """#!lua name=motia1
redis.register_function('motia1_set', function(keys, args) return 'older set' end)
redis.register_function('motia1_get', function(keys, args) return 'older get' end)
"""


def _pairs(flat: list[Any]) -> dict[Any, Any]:
    """A RESP2 map (``FUNCTION LIST`` replies in flat name, value lists) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def test_an_older_versions_library_on_the_server_is_neither_replaced_nor_called(redis_server_factory):
    from motia.state.backends.redis.client import function_name, library

    # Given a server where another pymotia version's library is loaded under its own names
    server = redis_server_factory()
    with redis.Redis(host="127.0.0.1", port=server.port) as admin:
        admin.function_load(OLDER_LIBRARY)
        sm = StateManager.from_url(f"{server.url}?prefix=versions")
        try:
            # When this version opens the store and writes and reads through its functions
            asyncio.run(sm.set("s", "k", {"n": 1}))
            assert asyncio.run(sm.get("s", "k")) == {"n": 1}
        finally:
            asyncio.run(sm.aclose())
        # Then both libraries are loaded: this one's under a name taken from its text, the older one untouched
        name, text = library()
        assert name.startswith("motia_") and name != "motia1"
        loaded = {entry[b"library_name"].decode(): entry for entry in map(_pairs, admin.function_list())}
        assert set(loaded) == {"motia1", name}
        assert admin.fcall("motia1_set", 1, "{versions}:meta") == b"older set"
        # And every function of this version's library carries its name, so none can collide with another's
        functions = [_pairs(f)[b"name"].decode() for f in loaded[name][b"functions"]]
        assert functions and all(f.startswith(f"{name}_") for f in functions)
        assert function_name("motia1_set") in functions and f"{name}_set" == function_name("motia1_set")
        assert text.startswith(f"#!lua name={name}\n")


def test_a_name_outside_the_library_is_refused():
    from motia.state.backends.redis.client import function_name

    with pytest.raises(ValueError, match="not a function of pymotia's library"):
        function_name("set")
