"""The Redis stream store against the memory backend, the reference implementation of the StreamStore contract
(``state/backends/memory_streams.py``): random sequences of stream changes and reads give the same results on both,
and the stream-trigger deliveries Redis makes in its Lua functions are byte for byte what the Python helpers of
``_events.py`` build. Plus what only the Redis layout has to prove: names with separators never collide, every
key is in the store's namespace, a retried change is recorded once, and retention forgets stream triggers.

Waiting on the log (several instances, cancellation, FUNCTION FLUSH, restarts) is in ``test_redis_stream_tail.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motia import StateConflictError
from motia.state.backends._events import stream_deliveries, stream_event_payload
from motia.state.backends.base import StateBackend
from motia.state.backends.memory import MemoryBackend
from motia.state.backends.redis import RedisBackend
from motia.state.backends.redis import streams as redis_streams
from motia.state.backends.types import StreamChange, StreamTriggerSubscription
from tests.redis_server import RedisServer
from tests.state.backends.test_redis import ReplyDroppingProxy, in_namespace, redis_keys

Sub = StreamTriggerSubscription

#: Names chosen to collide if a key joined stream and group naively ("s" + "1:g" and "s:1" + "g").
STREAMS = ["s", "s:1", "a/b"]
GROUPS = ["g", "1:g", "é", "line\nbreak"]
ITEMS = ["i", "j", "k/1"]
TRIGGERS = [Sub("all", "s"), Sub("group", "s:1", "g"), Sub("item", "a/b", "é", "i"), Sub("other", "s:1", "1:g", "j")]


def without_time(change: StreamChange | None) -> tuple[Any, ...] | None:
    return None if change is None else change._replace(timestamp=0.0)


def payload_without_time(payload: bytes) -> dict[str, Any]:
    decoded = orjson.loads(payload)
    del decoded["timestamp"]
    return decoded


async def drain_deliveries(backend: StateBackend, steps: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every delivery, claimed and completed until none is left (a group's deliveries come one at a time)."""
    seen: list[tuple[str, dict[str, Any]]] = []
    while batch := await backend.claim(steps, owner="t", limit=1000, lease=60):
        for delivery in batch:
            seen.append((delivery.id, payload_without_time(delivery.payload)))
            assert await backend.complete(delivery.id, owner="t")
    return seen


write_ops = st.tuples(
    st.just("write"),
    st.sampled_from(STREAMS),
    st.sampled_from(GROUPS),
    st.sampled_from(ITEMS),
    st.one_of(st.none(), st.integers(0, 3).map(lambda n: orjson.dumps({"n": n, "s": "x/y"}))),
    st.one_of(st.none(), st.integers(0, 3)),
    st.sampled_from([2, 5, 1000]),
)
send_ops = st.tuples(
    st.just("send"),
    st.sampled_from(STREAMS),
    st.sampled_from(GROUPS),
    st.one_of(st.none(), st.sampled_from(ITEMS)),
    st.integers(0, 3).map(lambda n: orjson.dumps({"type": "t", "data": n})),
    st.sampled_from([2, 5, 1000]),
)
history_ops = st.tuples(
    st.just("history"), st.sampled_from(STREAMS), st.sampled_from(GROUPS), st.integers(0, 12), st.integers(0, 4)
)
snapshot_ops = st.tuples(
    st.just("snapshot"), st.sampled_from(STREAMS), st.sampled_from(GROUPS), st.one_of(st.none(), st.sampled_from(ITEMS))
)


async def apply(backend: StateBackend, op: tuple[Any, ...]) -> Any:
    kind = op[0]
    try:
        if kind == "write":
            _, stream, group, item, data, if_version, history = op
            return without_time(
                await backend.stream_write(stream, group, item, data, if_version=if_version, history=history)
            )
        if kind == "send":
            _, stream, group, item, event, history = op
            return without_time(await backend.stream_send(stream, group, item, event, history=history))
        if kind == "history":
            _, stream, group, after, limit = op
            changes = await backend.stream_history(stream, group, after=after, limit=limit)
            return None if changes is None else [without_time(change) for change in changes]
        _, stream, group, item = op
        return await backend.stream_snapshot(stream, group, item)
    except StateConflictError as exc:
        return ("conflict", exc.expected, exc.actual)


async def state_of(backend: StateBackend) -> dict[str, Any]:
    state: dict[str, Any] = {
        "names": await backend.stream_names(),
        "position": await backend.stream_position(),
        "tail": [without_time(change) for change in await backend.stream_tail(0, limit=10_000, wait=0)],
    }
    for stream in STREAMS:
        state[f"groups {stream}"] = await backend.stream_groups(stream)
        for group in GROUPS:
            state[f"snapshot {stream} {group}"] = await backend.stream_snapshot(stream, group, None)
            for item in ITEMS:
                state[f"get {stream} {group} {item}"] = await backend.stream_get(stream, group, item)
    state["deliveries"] = sorted(await drain_deliveries(backend, sorted({sub.step for sub in TRIGGERS})))
    return state


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(st.one_of(write_ops, send_ops, history_ops, snapshot_ops), max_size=40))
def test_random_stream_changes_give_what_the_memory_backend_gives(redis_url_factory: Callable[[], str], ops) -> None:
    async def run() -> None:
        # Given the reference memory backend and a fresh Redis store, with the same stream triggers
        memory = MemoryBackend()
        store = RedisBackend(redis_url_factory())
        try:
            for backend in (memory, store):
                await backend.add_stream_subscriptions(TRIGGERS)
            # When both get the same changes and reads
            for op in ops:
                # Then every answer is the same (timestamps aside: each store has its clock)
                assert await apply(store, op) == await apply(memory, op), op
            # And so are the items, groups, streams, log, positions and deliveries afterwards
            assert await state_of(store) == await state_of(memory)
        finally:
            await store.aclose()
            await memory.aclose()

    asyncio.run(run())


async def test_a_stream_delivery_is_byte_for_byte_what_the_python_helpers_build(redis_url: str) -> None:
    # Given stream triggers on names JSON must escape or that Lua's cjson would write differently
    store = RedisBackend(redis_url)
    stream, group = 'to/do "quoted"', "grüße\t\x01/\u2028"
    triggers = [Sub("every", stream), Sub("one", stream, group, "it/em")]
    try:
        await store.add_stream_subscriptions(triggers)
        # When an item is created, updated (with a float and a big int), deleted, and an event is sent
        changes = [
            await store.stream_write(stream, group, "it/em", b'{"id":"it/em","v":1.5}', if_version=None, history=10),
            await store.stream_write(
                stream, group, "it/em", b'{"id":"it/em","v":12345678901234567890}', if_version=1, history=10
            ),
            await store.stream_send(stream, group, "it/em", b'{"type":"typing","data":{"who":"\xc3\xa9"}}', history=10),
            await store.stream_send(stream, group, None, b'{"type":"ping","data":null}', history=10),
            await store.stream_write(stream, group, "it/em", None, if_version=None, history=10),
        ]
        expected = {
            new.id: new for change in changes if change is not None for new in stream_deliveries(triggers, change)
        }
        # Then every delivery has the id, step, kind, order and payload the Python helpers give
        got = {}
        while batch := await store.claim(["every", "one"], owner="t", limit=100, lease=60):
            for delivery in batch:
                got[delivery.id] = delivery
                await store.complete(delivery.id, owner="t")
        assert sorted(got) == sorted(expected)
        assert len(got) == 5 + 4  # every change for "every"; the item's four (not the group event) for "one"
        by_position = {change.position: change for change in changes if change is not None}
        for delivery_id, new in expected.items():
            delivery = got[delivery_id]
            assert (delivery.step, delivery.kind) == (new.step, "stream")
            assert delivery.payload == new.payload
            assert delivery.payload == stream_event_payload(by_position[int(delivery_id.split(":")[1])])
    finally:
        await store.aclose()


async def test_deliveries_of_one_group_are_claimed_one_at_a_time_in_seq_order(redis_url: str) -> None:
    # Given a trigger on a stream and three changes in one group and one in another
    store = RedisBackend(redis_url)
    try:
        await store.add_stream_subscriptions([Sub("w", "s")])
        for n in range(3):
            await store.stream_send("s", "g1", None, orjson.dumps({"type": "n", "data": n}), history=10)
        await store.stream_send("s", "g2", None, b'{"type":"n","data":9}', history=10)
        # When the worker claims: one per group at a time
        order = []
        while batch := await store.claim(["w"], owner="t", limit=100, lease=60):
            assert len({orjson.loads(d.payload)["group_id"] for d in batch}) == len(batch)
            for delivery in batch:
                payload = orjson.loads(delivery.payload)
                order.append((payload["group_id"], payload["seq"]))
                await store.complete(delivery.id, owner="t")
        # Then each group's changes came in seq order, each once
        assert [seq for group, seq in order if group == "g1"] == [1, 2, 3]
        assert [seq for group, seq in order if group == "g2"] == [1]
        assert await store.pending() == 0
    finally:
        await store.aclose()


async def test_streams_and_state_never_see_each_other(redis_url: str) -> None:
    # Given a state scope and a stream with the same name, and a group named like a state key
    store = RedisBackend(redis_url)
    try:
        await store.set("todo", "inbox", b"1", ttl=None, if_version=None)
        await store.stream_write("todo", "inbox", "inbox", b'{"id":"inbox"}', if_version=None, history=10)
        # Then state lists only the scope, streams only the stream, and neither reads the other's value
        assert await store.scopes() == ["todo"]
        assert await store.stream_names() == ["todo"]
        assert (await store.get("todo", "inbox")).data == b"1"  # type: ignore[union-attr]
        assert (await store.stream_get("todo", "inbox", "inbox")).data == b'{"id":"inbox"}'  # type: ignore[union-attr]
        await store.clear("todo")
        assert await store.stream_groups("todo") == ["inbox"]
    finally:
        await store.aclose()


async def test_every_stream_key_is_under_the_store_prefix(redis_server_factory) -> None:
    # Given a private server and a store using every stream structure
    server: RedisServer = redis_server_factory()
    store = RedisBackend(f"{server.url}?prefix=app1")
    try:
        await store.add_stream_subscriptions([Sub("w", "s", "g")])
        await store.stream_write("s", "g", "i", b"{}", if_version=None, history=10)
        await store.stream_send("s", "g", None, b"{}", history=10)
        await store.stream_write("s", "g2", "i", b"{}", if_version=None, history=10)
        await store.stream_tail(0, limit=10, wait=0.01)
    finally:
        await store.aclose()
    # Then every key is in the store's namespace, stream keys under "{app1}:s:"
    keys = redis_keys(server)
    assert [key for key in keys if not in_namespace(key, "app1")] == []
    assert {"{app1}:s:log", "{app1}:s:names", "{app1}:s:seq", "{app1}:s:t"} <= set(keys)


async def test_the_log_keeps_the_newest_changes_and_every_recent_one(redis_url: str, monkeypatch) -> None:
    store = RedisBackend(redis_url)
    try:
        # Given a log that keeps at least 5 changes and everything younger than a minute
        monkeypatch.setattr(redis_streams, "LOG_KEEP", 5)
        for _ in range(12):
            await store.stream_send("s", "g", None, b"{}", history=100)
        # Then nothing young was dropped
        assert [c.position for c in await store.stream_tail(0, limit=100, wait=0)] == list(range(1, 13))
        # Given a log that keeps 5 changes and those younger than no time at all
        monkeypatch.setattr(redis_streams, "LOG_AGE", 0.0)
        for _ in range(12):
            await store.stream_send("s", "g", None, b"{}", history=100)
        # Then it keeps (about) the newest 5, ending at the newest, while the group's history keeps 24
        positions = [c.position for c in await store.stream_tail(0, limit=100, wait=0)]
        assert 5 <= len(positions) <= 6 and positions == list(range(25 - len(positions), 25))
        assert len(await store.stream_history("s", "g", after=0, limit=100) or []) == 24
        # And a tail from before the oldest kept change starts at the oldest kept
        assert (await store.stream_tail(1, limit=1, wait=0))[0].position == positions[0]
    finally:
        await store.aclose()


async def test_a_stream_change_whose_reply_was_lost_is_recorded_once(redis_server: RedisServer) -> None:
    # Given a store reached through a proxy that drops the reply to the next call (after Redis applied it)
    proxy = ReplyDroppingProxy(redis_server.port)
    proxy.start()
    store = RedisBackend(f"redis://127.0.0.1:{proxy.port}/0?prefix=lost-stream")
    watcher = RedisBackend(f"{redis_server.url}?prefix=lost-stream")
    try:
        await store.add_stream_subscriptions([Sub("w", "s")])
        # When a write's reply is lost and the client retries it
        proxy.armed = True
        change = await store.stream_write("s", "g", "i", b'{"id":"i"}', if_version=0, history=10)
        assert proxy.dropped.is_set()
        # Then the retry got the first attempt's answer: one change, one delivery
        assert change is not None and (change.seq, change.position, change.kind) == (1, 1, "create")
        assert [c.seq for c in await watcher.stream_tail(0, limit=10, wait=0)] == [1]
        assert await watcher.pending("w") == 1
        assert (await watcher.stream_get("s", "g", "i")).version == 1  # type: ignore[union-attr]
    finally:
        await store.aclose()
        await watcher.aclose()
        proxy.close()


async def test_prune_forgets_the_stream_triggers_of_a_forgotten_step(redis_url: str, clock) -> None:
    # Given two steps with stream triggers, one no app has served for long
    store = RedisBackend(redis_url, clock=clock)
    try:
        await store.add_stream_subscriptions([Sub("gone", "s"), Sub("gone", "t", "g"), Sub("kept", "s")])
        await store.touch_steps(["gone", "kept"])
        clock.advance(100)
        await store.touch_steps(["kept"])
        # When retention forgets it
        result = await store.prune(dead_letter_age=None, step_age=50)
        assert result.steps == 1
        # Then new changes make deliveries only for the other
        await store.stream_send("s", "g", None, b"{}", history=10)
        await store.stream_send("t", "g", None, b"{}", history=10)
        assert await store.pending("gone") == 0
        assert await store.pending("kept") == 1
        # And the forgotten step's trigger sets are gone
        client = redis.Redis.from_url(redis_url.split("?")[0])
        try:
            members = client.smembers(f"{{{store.prefix}}}:s:t")
            assert members == {b"s"}
        finally:
            client.close()
    finally:
        await store.aclose()


async def test_a_failing_listener_does_not_fail_the_committed_change(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a stream listener with a bug
    store = RedisBackend(redis_url)
    try:

        def broken() -> None:
            raise RuntimeError("listener bug")

        store.add_stream_listener(broken)
        # When a change commits
        change = await store.stream_write("s", "g", "i", b"1", if_version=None, history=10)
        # Then its writer hears it committed, and the bug is logged
        assert change is not None and change.seq == 1
        assert await store.stream_get("s", "g", "i") is not None
        assert "a stream listener" in caplog.text and "listener bug" in caplog.text
    finally:
        await store.aclose()
