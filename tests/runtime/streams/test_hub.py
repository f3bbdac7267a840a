"""The stream hub and its subscribers over a real store (memory and SQLite): sync, changes, resume, limits,
hooks, and a tail that survives errors. The socket endpoints are tested in test_websocket.py."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from motia.runtime.streams.hub import StreamHub
from motia.runtime.streams.subscriber import CLOSE_TOO_SLOW, Subscriber
from motia.state.backends.base import StateBackend
from motia.state.backends.memory import MemoryBackend
from motia.state.urls import open_backend
from motia.streams.config import StreamDefinition
from motia.streams.manager import StreamManager
from motia.streams.protocol import ClientRequest
from tests.polling import eventually

TODO = StreamDefinition(name="todo", history=5)


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateBackend]:
    if request.param == "memory":
        store: StateBackend = MemoryBackend()
    elif request.param == "sqlite":
        store = open_backend(f"sqlite:///{tmp_path / 's.db'}")
    elif request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        store = open_backend(f"{server.url}?schema=hub_{uuid.uuid4().hex[:12]}")
    else:
        server = request.getfixturevalue("redis_server")
        store = open_backend(f"{server.url}?prefix=hub-{uuid.uuid4().hex[:12]}")
    yield store
    await store.aclose()


async def make_hub(backend: StateBackend, *definitions: StreamDefinition, **options: Any) -> StreamHub:
    hub = StreamHub(StreamManager(backend, definitions or [TODO]), tail_wait=0.2, **options)
    await hub.start()
    return hub


@pytest.fixture
async def hubs() -> AsyncIterator[list[StreamHub]]:
    started: list[StreamHub] = []
    yield started
    for hub in started:
        await hub.close()


def join(
    group: str = "inbox", item: str | None = None, sub: str = "s1", since: int | None = None, stream: str = "todo"
):
    return ClientRequest("join", stream, group, item, sub, since)


async def messages(subscriber: Subscriber, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` messages (decoded), failing after ``timeout``."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        batch = await asyncio.wait_for(subscriber.next_batch(count - len(got)), timeout)
        assert batch, f"subscriber closed: {subscriber.close_reason}"
        got.extend(orjson.loads(frame.text) for frame in batch)
    return got


async def nothing_more(subscriber: Subscriber, hub: StreamHub) -> None:
    """Nothing is queued once the hub has fanned out everything committed so far."""
    end = await hub.manager.backend.stream_position()
    await eventually(lambda: hub.position >= end, what="the hub fanning out every change")
    assert subscriber.queued == 0


async def test_join_syncs_then_streams_every_change(backend: StateBackend, hubs: list[StreamHub]) -> None:
    # Given a group with one item
    hub = await make_hub(backend)
    hubs.append(hub)
    streams = hub.manager
    await streams.set("todo", "inbox", "t1", {"title": "one"})
    # When a subscriber joins the group
    subscriber = hub.open_subscriber()
    assert await subscriber.join(join()) is None
    [synced] = await messages(subscriber, 1)
    assert synced["event"] == {"type": "sync", "data": [{"title": "one", "id": "t1"}]}
    assert (synced["streamName"], synced["groupId"], synced["seq"], "id" in synced) == ("todo", "inbox", 1, False)
    # Then every change follows: create, update, delete and events, with increasing seq and timestamps
    await streams.set("todo", "inbox", "t2", {"title": "two"})
    await streams.set("todo", "inbox", "t2", {"title": "2"})
    await streams.delete("todo", "inbox", "t1")
    await streams.send("todo", {"groupId": "inbox"}, {"type": "typing", "data": {"who": "ann"}})
    await streams.send("todo", {"groupId": "inbox", "id": "t2"}, {"type": "ping", "data": 1})
    await streams.set("todo", "other", "x", {"title": "elsewhere"})  # another group: not sent
    got = await messages(subscriber, 5)
    assert [(m.get("id"), m["seq"], m["event"]) for m in got] == [
        ("t2", 2, {"type": "create", "data": {"title": "two", "id": "t2"}}),
        ("t2", 3, {"type": "update", "data": {"title": "2", "id": "t2"}}),
        ("t1", 4, {"type": "delete", "data": {"title": "one", "id": "t1"}}),
        (None, 5, {"type": "event", "event": {"type": "typing", "data": {"who": "ann"}}}),
        ("t2", 6, {"type": "event", "event": {"type": "ping", "data": 1}}),
    ]
    stamps = [synced["timestamp"]] + [m["timestamp"] for m in got]
    assert stamps == sorted(set(stamps))  # strictly increasing
    await nothing_more(subscriber, hub)


async def test_an_item_join_syncs_the_item_and_gets_only_its_changes(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    hub = await make_hub(backend)
    hubs.append(hub)
    subscriber = hub.open_subscriber()
    assert await subscriber.join(join(item="t1")) is None
    [synced] = await messages(subscriber, 1)
    assert (synced["id"], synced["seq"], synced["event"]) == ("t1", 0, {"type": "sync", "data": None})
    await hub.manager.set("todo", "inbox", "t2", {"n": 2})
    await hub.manager.set("todo", "inbox", "t1", {"n": 1})
    [created] = await messages(subscriber, 1)
    assert (created["id"], created["seq"], created["event"]["type"]) == ("t1", 2, "create")
    await nothing_more(subscriber, hub)


async def test_one_message_per_change_for_a_group_and_an_item_subscription_on_one_connection(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    hub = await make_hub(backend)
    hubs.append(hub)
    subscriber = hub.open_subscriber()
    assert await subscriber.join(join(sub="group")) is None
    assert await subscriber.join(join(item="t1", sub="item")) is None
    assert [m["event"]["type"] for m in await messages(subscriber, 2)] == ["sync", "sync"]
    other = hub.open_subscriber()
    assert await other.join(join(sub="group")) is None
    await messages(other, 1)
    for n in range(3):
        await hub.manager.set("todo", "inbox", "t1", {"n": n})
    assert [m["seq"] for m in await messages(subscriber, 3)] == [1, 2, 3]
    assert [m["seq"] for m in await messages(other, 3)] == [1, 2, 3]
    await nothing_more(subscriber, hub)


async def test_a_new_connection_stamps_after_every_earlier_one_of_the_process(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    # Motia's clients keep their last timestamp across a reconnect: a burst that pushed one socket's stamps
    # ahead of the clock must not make the next socket's sync look old to them
    hub = await make_hub(backend)
    hubs.append(hub)
    busy = hub.open_subscriber()
    await busy.join(join(item="t1"))
    await asyncio.gather(*(hub.manager.set("todo", "inbox", "t1", {"n": n}) for n in range(200)))
    last = (await messages(busy, 201))[-1]["timestamp"]
    await busy.aclose()
    fresh = hub.open_subscriber()
    await fresh.join(join(item="t1", sub="again"))
    [synced] = await messages(fresh, 1)
    assert synced["timestamp"] > last


async def test_two_changes_in_one_millisecond_get_distinct_increasing_timestamps(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    hub = await make_hub(backend)
    hubs.append(hub)
    subscriber = hub.open_subscriber()
    await subscriber.join(join(item="t1"))
    await asyncio.gather(*(hub.manager.set("todo", "inbox", "t1", {"n": n}) for n in range(20)))
    got = await messages(subscriber, 21)
    stamps = [m["timestamp"] for m in got]
    assert all(later > earlier for earlier, later in zip(stamps, stamps[1:], strict=False))
    assert [m["seq"] for m in got] == list(range(21))


async def test_resume_replays_exactly_the_missed_changes(backend: StateBackend, hubs: list[StreamHub]) -> None:
    hub = await make_hub(backend)
    hubs.append(hub)
    for n in range(3):
        await hub.manager.set("todo", "inbox", f"t{n}", {"n": n})
    subscriber = hub.open_subscriber()
    # When a client that saw seq 1 resumes, it gets seq 2 and 3 (no sync), then what follows
    assert await subscriber.join(join(since=1)) is None
    await hub.manager.delete("todo", "inbox", "t0")
    got = await messages(subscriber, 3)
    assert [(m["seq"], m["event"]["type"], m["id"]) for m in got] == [
        (2, "create", "t1"),
        (3, "create", "t2"),
        (4, "delete", "t0"),
    ]
    # An item subscription resuming gets only its item's changes
    item = hub.open_subscriber()
    assert await item.join(join(item="t2", since=0)) is None
    assert [(m["seq"], m["id"]) for m in await messages(item, 1)] == [(3, "t2")]
    # Resuming from the current seq sends nothing until the next change
    current = hub.open_subscriber()
    assert await current.join(join(since=4)) is None
    await hub.manager.set("todo", "inbox", "t9", {"n": 9})
    assert [m["seq"] for m in await messages(current, 1)] == [5]
    await nothing_more(current, hub)


async def test_resume_past_the_history_gets_a_reset_sync(backend: StateBackend, hubs: list[StreamHub]) -> None:
    hub = await make_hub(backend)  # TODO keeps (at least) 5 changes per group
    hubs.append(hub)
    for n in range(8):
        await hub.manager.set("todo", "inbox", "t", {"n": n})
    subscriber = hub.open_subscriber()
    assert await subscriber.join(join(since=1)) is None
    [first] = await messages(subscriber, 1)
    if isinstance(backend, MemoryBackend) or first["event"]["type"] == "sync":  # memory trims at once
        assert (first["seq"], first["event"]) == (8, {"type": "sync", "data": [{"n": 7, "id": "t"}], "reset": True})
    else:  # a store may keep more than asked: then the replay is whole
        rest = await messages(subscriber, 6)
        assert [m["seq"] for m in [first, *rest]] == list(range(2, 9))
    # A cursor beyond the group's seq (from another store) resets
    ahead = hub.open_subscriber()
    assert await ahead.join(join(item="t", since=99)) is None
    [reset] = await messages(ahead, 1)
    assert (reset["seq"], reset["event"]["reset"], reset["event"]["data"]) == (8, True, {"n": 7, "id": "t"})


async def test_refused_joins_subscribe_nothing(backend: StateBackend, hubs: list[StreamHub]) -> None:
    hub = await make_hub(backend, max_subscriptions=2)
    hubs.append(hub)
    subscriber = hub.open_subscriber()
    refusal = await subscriber.join(join(stream="nope"))
    assert refusal is not None and refusal.code == "STREAM_NOT_FOUND" and "'nope'" in refusal.message
    assert await subscriber.join(join(sub="a")) is None
    assert await subscriber.join(join(sub="b")) is None
    refusal = await subscriber.join(join(sub="c"))
    assert refusal is not None and refusal.code == "TOO_MANY_SUBSCRIPTIONS"
    assert set(subscriber.subscriptions) == {"a", "b"}
    # Joining an id again replaces it, and leaving frees a place
    assert await subscriber.join(join(sub="a", item="x")) is None
    assert subscriber.subscriptions["a"].id == "x"
    assert await subscriber.leave("b") and not await subscriber.leave("b")
    assert await subscriber.join(join(sub="c")) is None


async def test_can_access_decides_each_join_and_fails_closed(
    backend: StateBackend, hubs: list[StreamHub], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Any, Any]] = []

    async def can_access(subscription: Any, auth_context: Any) -> bool:
        seen.append((subscription, auth_context))
        return auth_context is not None and subscription.group_id in auth_context["groups"]

    def broken(subscription: Any, auth_context: Any) -> bool:
        raise RuntimeError("boom")

    hub = await make_hub(
        backend,
        StreamDefinition(name="todo", can_access=can_access),
        StreamDefinition(name="broken", can_access=broken),
        StreamDefinition(name="silent", can_access=lambda subscription, auth: None),
    )
    hubs.append(hub)
    await hub.manager.set("todo", "secret", "t", {"n": 1})
    allowed = hub.open_subscriber({"groups": ["inbox"]})
    assert await allowed.join(join()) is None
    assert seen[0][0].group_id == "inbox" and seen[0][0].subscription_id == "s1" and seen[0][1] == {"groups": ["inbox"]}
    denied = await allowed.join(join(group="secret", sub="s2"))
    assert denied is not None and denied.code == "STREAM_ACCESS_DENIED"
    anonymous = hub.open_subscriber()
    assert (await anonymous.join(join(group="secret"))).code == "STREAM_ACCESS_DENIED"  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, "motia.streams"):
        assert (await anonymous.join(join(stream="broken"))).code == "STREAM_ACCESS_DENIED"  # type: ignore[union-attr]
    assert "can_access of stream 'broken' raised" in caplog.text
    assert (await anonymous.join(join(stream="silent"))).code == "STREAM_ACCESS_DENIED"  # type: ignore[union-attr]
    # No data reached the denied subscriptions
    await hub.manager.set("todo", "secret", "t", {"n": 2})
    assert [m["groupId"] for m in await messages(allowed, 1)] == ["inbox"]
    await nothing_more(allowed, hub)
    await nothing_more(anonymous, hub)


async def test_presence_hooks_run_on_join_leave_and_close_and_on_join_may_refuse(
    backend: StateBackend, hubs: list[StreamHub], caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str | None, Any, Any]] = []

    async def on_join(subscription: Any, ctx: Any, auth_context: Any) -> Any:
        calls.append(("join", subscription.subscription_id, ctx, auth_context))
        if subscription.group_id == "bad":
            raise RuntimeError("join hook failed")
        if subscription.group_id == "closed":
            return {"unauthorized": True}  # motia-py 1.0's way to refuse a join
        return {"unauthorized": False}

    def on_leave(subscription: Any, ctx: Any, auth_context: Any) -> None:  # a def hook: runs in a thread
        calls.append(("leave", subscription.subscription_id, ctx, auth_context))
        if subscription.subscription_id == "c":
            raise RuntimeError("leave hook failed")

    hub = StreamHub(
        StreamManager(backend, [StreamDefinition(name="todo", on_join=on_join, on_leave=on_leave)]),
        context_factory=lambda definition, subscription, is_async: f"ctx:{definition.name}:{is_async}",
    )
    await hub.start()
    hubs.append(hub)
    await hub.manager.set("todo", "bad", "t", {"n": 1})
    subscriber = hub.open_subscriber("user-1")
    assert await subscriber.join(join(sub="a")) is None
    [synced] = await messages(subscriber, 1)
    assert synced["groupId"] == "inbox"
    # A hook that raises or refuses denies the join: no data is sent for it, and no on_leave runs
    with caplog.at_level(logging.ERROR, "motia.streams"):
        refused = await subscriber.join(join(group="bad", sub="b"))
        assert refused is not None and refused.code == "STREAM_ACCESS_DENIED"
    assert "on_join of stream 'todo' raised: the join is denied" in caplog.text
    refused = await subscriber.join(join(group="closed", sub="x"))
    assert refused is not None and refused.code == "STREAM_ACCESS_DENIED"
    assert set(subscriber.subscriptions) == {"a"}
    assert await subscriber.leave("a")
    assert await subscriber.join(join(sub="c")) is None
    [synced] = await messages(subscriber, 1)  # the next message: nothing of the refused groups came before
    assert (synced["groupId"], synced["event"]["type"]) == ("inbox", "sync")
    with caplog.at_level(logging.ERROR, "motia.streams"):
        await subscriber.aclose()
        await subscriber.aclose()  # once
    assert "on_leave of stream 'todo' raised" in caplog.text
    assert [(kind, sub) for kind, sub, _, _ in calls] == [
        ("join", "a"),
        ("join", "b"),
        ("join", "x"),
        ("leave", "a"),
        ("join", "c"),
        ("leave", "c"),
    ]
    assert {(kind, ctx, auth) for kind, _, ctx, auth in calls} == {
        ("join", "ctx:todo:True", "user-1"),
        ("leave", "ctx:todo:False", "user-1"),
    }
    assert hub.subscribers == 0


async def test_a_subscriber_that_does_not_keep_up_is_closed_and_its_queue_dropped(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    hub = await make_hub(backend, queue_limit=10)
    hubs.append(hub)
    slow = hub.open_subscriber()
    fast = hub.open_subscriber()
    await slow.join(join())
    await fast.join(join())
    received: list[dict[str, Any]] = []
    read = asyncio.Event()

    async def read_fast() -> None:
        while len(received) < 31:
            batch = await fast.next_batch()
            assert batch
            received.extend(orjson.loads(frame.text) for frame in batch)
            read.set()

    reader = asyncio.create_task(read_fast())
    for n in range(30):
        await hub.manager.set("todo", "inbox", "t", {"n": n})
        # The fast subscriber reads each change (after the join's sync) before the next is written, so it keeps up
        # whatever the store's tail hands over at once (PostgreSQL's could bring more than the queue holds).
        while len(received) < n + 2 and not reader.done():
            read.clear()
            await asyncio.wait_for(read.wait(), 10)
    await asyncio.wait_for(reader, 10)
    assert slow.closed and slow.close_code == CLOSE_TOO_SLOW
    assert slow.close_reason is not None and "too slow" in slow.close_reason and "resume by seq" in slow.close_reason
    assert slow.queued == 0 and await slow.next_batch() == []
    assert [m["seq"] for m in received] == list(range(31))  # the other subscriber got everything
    assert hub.subscribers == 1


class FlakyTail(MemoryBackend):
    """A store whose change log fails to read a few times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def stream_tail(self, after: int, *, limit: int, wait: float) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise OSError("the log is unreadable right now")
        return await super().stream_tail(after, limit=limit, wait=wait)


async def test_the_tail_survives_errors_and_misses_nothing(
    hubs: list[StreamHub], caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyTail(failures=0)
    hub = await make_hub(store)
    hubs.append(hub)
    subscriber = hub.open_subscriber()
    await subscriber.join(join())
    await messages(subscriber, 1)
    with caplog.at_level(logging.ERROR, "motia.streams"):
        store.failures = 3
        await hub.manager.set("todo", "inbox", "t", {"n": 1})
        await hub.manager.set("todo", "inbox", "t", {"n": 2})
        assert [m["seq"] for m in await messages(subscriber, 2)] == [1, 2]
    assert caplog.text.count("reading the stream change log failed") >= 1
    assert hub.running
    await store.aclose()


async def test_joins_racing_writes_miss_nothing_and_get_nothing_twice(
    backend: StateBackend, hubs: list[StreamHub]
) -> None:
    # Given a writer changing a group continuously (items and events)
    hub = await make_hub(backend, StreamDefinition(name="todo", history=10_000))
    hubs.append(hub)
    total = 300

    async def write() -> None:
        for n in range(total):
            if n % 7 == 3:
                await hub.manager.send("todo", {"groupId": "inbox", "id": f"t{n % 5}"}, {"type": "tick", "data": n})
            else:
                await hub.manager.set("todo", "inbox", f"t{n % 5}", {"n": n})
            if n % 10 == 0:
                await asyncio.sleep(0)

    # When subscribers join the group (and one item, and a resume) while it changes
    async def join_later(delay_writes: int, request: ClientRequest) -> Subscriber:
        while (await hub.manager.backend.stream_snapshot("todo", "inbox", None))[0] < delay_writes:
            await asyncio.sleep(0.001)
        subscriber = hub.open_subscriber()
        assert await subscriber.join(request) is None
        return subscriber

    writer = asyncio.create_task(write())
    joins = [join_later(at, join(sub=f"g{at}")) for at in (0, 40, 90, 150, 220)]
    joins += [join_later(60, join(item="t2", sub="item")), join_later(120, join(since=100, sub="resume"))]
    subscribers = await asyncio.gather(*joins)
    await writer

    # Then each one's seqs run from where it started, one by one, to the last change, with no repeat
    for subscriber, name in zip(
        subscribers, [*(f"g{at}" for at in (0, 40, 90, 150, 220)), "item", "resume"], strict=True
    ):
        got: list[dict[str, Any]] = []
        while not got or got[-1]["seq"] < total:
            if name == "item" and got and got[-1]["seq"] >= total - 5:
                break  # the item's last change may be before the group's last
            got.extend(await messages(subscriber, 1))
        seqs = [m["seq"] for m in got]
        if name == "item":
            assert got[0]["event"]["type"] == "sync" and all(m["id"] == "t2" for m in got[1:]), name
            expected = [s for s in range(seqs[0] + 1, total + 1) if (s - 1) % 5 == 2]
            assert seqs[1:] == expected and expected[-1] == total - 2, name
        elif name == "resume":
            assert seqs == list(range(101, total + 1)), name
        else:
            assert got[0]["event"]["type"] == "sync", name
            assert seqs[1:] == list(range(seqs[0] + 1, total + 1)), name


async def test_a_log_that_went_back_is_followed_and_subscribers_resume(
    hubs: list[StreamHub], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a subscriber following a group on a store that then loses its stream data (a Redis restarted
    # without persistence: positions and seqs start again from nothing)
    store = MemoryBackend()
    hub = await make_hub(store)
    hubs.append(hub)
    for n in range(5):
        await hub.manager.set("todo", "inbox", "t", {"n": n})
    subscriber = hub.open_subscriber()
    await subscriber.join(join())
    await messages(subscriber, 1)
    await eventually(lambda: hub.position >= 5, what="the hub reading the old log")
    with caplog.at_level(logging.WARNING, "motia.streams"):
        store._init_streams()
        # Then the subscriber is closed so that its client resumes
        await asyncio.wait_for(subscriber.wait_closed(), 5)
    assert subscriber.close_code == CLOSE_TOO_SLOW and "reset" in (subscriber.close_reason or "")
    assert "the stream change log went back from position 5 to 0" in caplog.text
    # ... and resuming from its old seq gets a reset sync, then the new log's changes
    again = hub.open_subscriber()
    assert await again.join(join(since=5)) is None
    [reset] = await messages(again, 1)
    assert (reset["seq"], reset["event"]) == (0, {"type": "sync", "data": [], "reset": True})
    await hub.manager.set("todo", "inbox", "t", {"n": "new"})
    [created] = await messages(again, 1)
    assert (created["seq"], created["event"]["type"]) == (1, "create")
    await store.aclose()
