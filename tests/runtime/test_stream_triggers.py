"""Stream triggers (SPEC 10.4): every change of a stream (create, update, delete, send) reaches the steps
subscribed to it once, with the right input, filtered by group, item and condition, in commit order per
group, retried and dead-lettered when the handler fails; start-up refuses a trigger on an undeclared stream.

Run on every backend that implements the stream contract (``tests.streams.conftest.STREAM_BACKENDS``).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import motia
from motia import StepLoadError, StreamTriggerInput, multi_trigger_step, queue, step, stream
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.types import TriggerInfo
from motia.state.manager import StateManager
from motia.streams import StreamDefinition, StreamManager
from motia.testing import call_handler
from tests.polling import eventually
from tests.runtime.delivery_helpers import FAST
from tests.streams.conftest import STREAM_BACKENDS

_prefixes = itertools.count()

StartStreamApp = Callable[..., Coroutine[Any, Any, MotiaApp]]

#: The streams the apps of these tests declare.
STREAMS = [StreamDefinition(name="todo"), StreamDefinition(name="chat"), StreamDefinition(name="short", history=2)]


@pytest.fixture(params=STREAM_BACKENDS)
def stream_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store's URL, on each backend that serves streams."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=st{next(_prefixes)}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=st{next(_prefixes)}"


@pytest.fixture
async def start_app(stream_url: str) -> AsyncIterator[StartStreamApp]:
    """``await start_app(steps, **options)``: a started app declaring ``STREAMS``, shut down after the test."""
    apps: list[MotiaApp] = []

    async def start(steps: list[Any], **options: Any) -> MotiaApp:
        options.setdefault("delivery", FAST)
        options.setdefault("shutdown_timeout", 2.0)
        options.setdefault("streams", STREAMS)
        app = MotiaApp(steps, state=stream_url, cron=False, **options)
        apps.append(app)
        await app.startup()
        return app

    yield start
    for app in reversed(apps):
        await app.shutdown()


def recorder(seen: list[tuple[StreamTriggerInput, Any]]):
    async def handler(input, ctx):
        seen.append((input, ctx))

    return handler


async def test_each_change_reaches_the_handler_once_with_its_fields(start_app: StartStreamApp) -> None:
    # Given a step subscribed to every change of the stream "todo"
    seen: list[tuple[StreamTriggerInput, Any]] = []
    app = await start_app([step({"name": "watch", "triggers": [stream("todo")]}, recorder(seen))])
    todo = app.streams
    before = time.time()
    # When an item is created, updated and deleted, and an event is sent to the group and to an item
    await todo.set("todo", "inbox", "t1", {"title": "milk"})
    await todo.update("todo", "inbox", "t1", [{"type": "set", "path": "done", "value": True}])
    await todo.delete("todo", "inbox", "t1")
    await todo.send("todo", {"groupId": "inbox"}, {"type": "typing", "data": {"user": "ada"}})
    await todo.send("todo", {"group_id": "inbox", "id": "t2"}, {"type": "ping", "data": None})
    # And another stream changes
    await todo.set("chat", "room", "m1", {"text": "hi"})
    await app.drain()
    # Then each change of "todo" arrived once, in order, with its values
    events = [event for event, _ in seen]
    t1 = {"title": "milk", "id": "t1"}
    t1_done = {"title": "milk", "id": "t1", "done": True}
    typing = {"type": "typing", "data": {"user": "ada"}}
    assert [
        (e.event_type, e.stream_name, e.group_id, e.item_id, e.old_value, e.new_value, e.data, e.seq) for e in events
    ] == [
        ("create", "todo", "inbox", "t1", None, t1, t1, 1),
        ("update", "todo", "inbox", "t1", t1, t1_done, t1_done, 2),
        ("delete", "todo", "inbox", "t1", t1_done, None, t1_done, 3),
        ("event", "todo", "inbox", None, None, None, typing, 4),
        ("event", "todo", "inbox", "t2", None, None, {"type": "ping", "data": None}, 5),
    ]
    assert all(e.type == "stream" and before - 1 <= e.timestamp <= time.time() + 1 for e in events)
    # And motia-py 1.0's names read the same change
    assert (events[1].id, events[1].event.type, events[1].event.data) == ("t1", "update", t1_done)
    # And the handler's ctx says what started it
    event, ctx = seen[0]
    assert ctx.is_stream() and not ctx.is_state()
    assert ctx.trigger == TriggerInfo(
        type="stream",
        stream_name="todo",
        group_id="inbox",
        item_id="t1",
        delivery_id=ctx.trigger.delivery_id,
        attempt=1,
    )
    assert ctx.trigger.delivery_id.startswith("stream:") and ctx.trigger.delivery_id.endswith(":watch")
    assert len({c.trigger.delivery_id for _, c in seen}) == 5
    assert await app.state.backend.pending() == 0 and await app.state.backend.dead_letters() == []


async def test_sync_handlers_and_their_blocking_ctx(start_app: StartStreamApp) -> None:
    # Given a `def` handler that reads the stream with the blocking ctx.streams
    seen: list[tuple[str, Any]] = []

    def handler(input, ctx):
        seen.append((input.event_type, ctx.streams.todo.get(input.group_id, input.item_id)))

    app = await start_app([step({"name": "sync", "triggers": [stream("todo")]}, handler)])
    # When an item is created
    await app.streams.set("todo", "g", "a", {"n": 1})
    await app.drain()
    # Then the handler ran in its thread and read the stored item
    assert seen == [("create", {"n": 1, "id": "a"})]


async def test_group_item_and_condition_filters(start_app: StartStreamApp) -> None:
    # Given steps filtering by group, by group and item, by a sync and an async condition
    calls: dict[str, list[str]] = {"group": [], "item": [], "sync": [], "async": [], "other": []}

    def collect(name: str):
        async def handler(input, ctx):
            calls[name].append(f"{input.group_id}/{input.item_id}:{input.event_type}")

        return handler

    async def big_async(input, ctx):
        return input.data is not None and input.data.get("n", 0) >= 10 and await ctx.state.get("flags", "on")

    steps = [
        step({"name": "by-group", "triggers": [stream("todo", group_id="inbox")]}, collect("group")),
        step({"name": "by-item", "triggers": [stream("todo", group_id="inbox", item_id="a")]}, collect("item")),
        step(
            {"name": "sync-cond", "triggers": [stream("todo", condition=lambda input: input.event_type == "delete")]},
            collect("sync"),
        ),
        step({"name": "async-cond", "triggers": [stream("todo", condition=big_async)]}, collect("async")),
        step(
            {"name": "other", "triggers": [{"type": "stream", "streamName": "chat", "itemId": "a"}]}, collect("other")
        ),
    ]
    app = await start_app(steps)
    await app.state.set("flags", "on", True)
    # When items of two groups and two streams change, and events are sent
    streams = app.streams
    await streams.set("todo", "inbox", "a", {"n": 5})
    await streams.set("todo", "inbox", "b", {"n": 50})
    await streams.set("todo", "done", "a", {"n": 1})
    await streams.set("chat", "inbox", "a", {"n": 1})
    await streams.delete("todo", "inbox", "a")
    await streams.send("todo", {"group_id": "inbox"}, {"type": "hello"})
    await streams.send("todo", {"group_id": "inbox", "id": "a"}, {"type": "poke"})
    await app.drain()
    # Then each step saw only its own; a false condition settles the delivery without running the handler
    assert calls["group"] == [
        "inbox/a:create",
        "inbox/b:create",
        "inbox/a:delete",
        "inbox/None:event",
        "inbox/a:event",
    ]
    # An item filter takes the item's changes and the events sent to that item, not those sent to the group
    assert calls["item"] == ["inbox/a:create", "inbox/a:delete", "inbox/a:event"]
    assert calls["sync"] == ["inbox/a:delete"]
    assert calls["async"] == ["inbox/b:create"]
    assert calls["other"] == ["inbox/a:create"]
    assert await app.state.backend.pending() == 0 and await app.state.backend.dead_letters() == []


async def test_in_commit_order_per_group_under_concurrent_writers(start_app: StartStreamApp) -> None:
    # Given a slowish handler recording the seq it sees, several deliveries running at once
    seen: dict[str, list[int]] = {}

    async def handler(input, ctx):
        await asyncio.sleep(random.random() / 500)  # uneven handler times invite reordering
        seen.setdefault(input.group_id, []).append(input.seq)

    app = await start_app([step({"name": "ordered", "triggers": [stream("todo")]}, handler)])
    groups = [f"g{i}" for i in range(3)]

    # When tasks write items of the same few groups concurrently
    async def writer(w: int) -> None:
        for i in range(20):
            await app.streams.set("todo", groups[i % len(groups)], f"w{w}-{i % 4}", {"i": i})

    await asyncio.gather(*(writer(w) for w in range(5)))
    await app.drain(20)
    # Then every change of every group was handled exactly once, in seq order
    assert sum(len(v) for v in seen.values()) == 100
    for group in groups:
        assert seen[group] == list(range(1, len(seen[group]) + 1)), group


async def test_a_handler_writing_its_stream_stops_through_its_condition(start_app: StartStreamApp) -> None:
    # Given a handler that rewrites the item that triggered it, guarded by a condition
    runs: list[str] = []

    async def normalise(input, ctx):
        runs.append(input.event_type)
        await ctx.streams.todo.set(input.group_id, input.item_id, {"title": input.data["title"].strip()})

    def padded(input) -> bool:
        return input.event_type != "delete" and input.data["title"] != input.data["title"].strip()

    app = await start_app([step({"name": "normalise", "triggers": [stream("todo", condition=padded)]}, normalise)])
    # When an item with a padded title is stored
    await app.streams.set("todo", "g", "t1", {"title": "  milk "})
    await app.drain()
    # Then the handler ran once; its own write made a change whose condition is false
    assert runs == ["create"]
    assert await app.streams.get("todo", "g", "t1") == {"title": "milk", "id": "t1"}


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(start_app: StartStreamApp) -> None:
    # Given a handler that always fails, with 2 retries and a short backoff, and another that works
    attempts: list[tuple[int, float]] = []

    async def flaky(input, ctx):
        attempts.append((ctx.trigger.attempt, time.monotonic()))
        raise RuntimeError(f"cannot handle {input.item_id}")

    ok: list[str] = []

    async def fine(input, ctx):
        ok.append(input.item_id)

    trigger = stream("todo", config={"max_retries": 2, "backoff": 0.05})
    app = await start_app(
        [
            step({"name": "flaky", "triggers": [trigger]}, flaky),
            step({"name": "fine", "triggers": [stream("todo")]}, fine),
        ]
    )
    # When an item is created
    await app.streams.set("todo", "g", "t1", {"n": 1})
    await app.drain()
    # Then 3 attempts ran, each after a growing wait, and the change is a dead letter with the error
    assert [n for n, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9
    (letter,) = await app.state.backend.dead_letters("flaky")
    assert letter.kind == "stream" and letter.attempts == 3 and "RuntimeError: cannot handle t1" in letter.error
    # And the other subscriber was not held up
    assert ok == ["t1"]


async def test_a_change_retried_keeps_its_group_in_order(start_app: StartStreamApp) -> None:
    # Given a handler that fails the first change of a group once
    handled: list[int] = []
    failed: list[int] = []

    async def handler(input, ctx):
        if input.seq == 1 and not failed:
            failed.append(1)
            raise ValueError("first time")
        handled.append(input.seq)

    trigger = stream("todo", config={"max_retries": 1, "backoff": 0.01})
    app = await start_app([step({"name": "once-flaky", "triggers": [trigger]}, handler)])
    # When two items of one group are written in a row
    await app.streams.set("todo", "g", "a", {"n": 1})
    await app.streams.set("todo", "g", "b", {"n": 2})
    await app.drain()
    # Then the second waited for the first one's retry
    assert handled == [1, 2]


async def test_a_trigger_on_an_undeclared_stream_fails_start_up_naming_the_step(start_app: StartStreamApp) -> None:
    # Given a step whose stream trigger names a stream no file declares
    steps = [
        step({"name": "fine", "triggers": [stream("todo")]}, recorder([])),
        step({"name": "typo", "triggers": [stream("todos")]}, recorder([])),
    ]
    # When the app starts, then it fails naming the step and the stream, and the declared ones
    with pytest.raises(StepLoadError, match=r"step 'typo' has a stream trigger on 'todos'.*declared streams: chat"):
        await start_app(steps)


async def test_without_the_stream_triggers_of_an_app_a_change_makes_no_delivery(start_app: StartStreamApp) -> None:
    # Given an app whose only stream trigger is on "chat"
    app = await start_app([step({"name": "chat-only", "triggers": [stream("chat")]}, recorder([]))])
    # When "todo" changes, then nothing waits for anyone
    await app.streams.set("todo", "g", "a", {"n": 1})
    assert await app.state.backend.pending() == 0


async def test_subscriptions_forgotten_by_the_store_come_back_while_the_app_runs(start_app: StartStreamApp) -> None:
    # Given an app touching its steps and registering its stream triggers every 0.1 s (its own prune off)
    seen: list[tuple[StreamTriggerInput, Any]] = []
    options = DeliveryOptions(lease=5.0, poll_interval=0.02, retention_interval=0.1, step_retention=0)
    app = await start_app([step({"name": "watch", "triggers": [stream("todo")]}, recorder(seen))], delivery=options)
    backend = app.state.backend

    # When another app's retention forgets the step (untouched for longer than its very short step age),
    # removing its subscriptions (tried until a prune falls between two of the app's touches)
    async def forgotten() -> bool:
        return (await backend.prune(dead_letter_age=None, step_age=0.005)).steps == 1

    await eventually(forgotten, timeout=10, what="the step forgotten by a prune", interval=0.01)
    # Then the app registers them again within its retention interval: a change made after that is delivered

    async def delivered() -> bool:
        await app.streams.set("todo", "g", f"probe{len(seen)}", {"n": 1})
        await app.drain()
        return bool(seen)

    await eventually(delivered, timeout=10, what="a change delivered after the subscriptions came back")
    assert seen[-1][0].stream_name == "todo"


async def test_a_multi_trigger_step_gets_stream_changes_in_its_stream_handler(start_app: StartStreamApp) -> None:
    # Given motia-py 1.0's builder with a stream handler and a queue handler
    calls: list[tuple[str, Any]] = []

    async def on_stream(change, ctx):
        calls.append(("stream", (change.event.type, change.id, ctx.trigger.stream_name)))

    async def on_queue(data, ctx):
        calls.append(("queue", data))

    built = (
        multi_trigger_step({"name": "multi", "triggers": [stream("chat"), queue("jobs")]})
        .on_stream(on_stream)
        .on_queue(on_queue)
        .handlers()
    )
    app = await start_app([built])
    # When a chat item is created and a job enqueued
    await app.streams.set("chat", "room", "m1", {"text": "hi"})
    await motia.enqueue({"topic": "jobs", "data": {"n": 1}})
    await app.drain()
    # Then each went to its own handler
    assert sorted(calls, key=str) == [("queue", {"n": 1}), ("stream", ("create", "m1", "chat"))]


def test_stream_trigger_input_aliases_and_item_access() -> None:
    change = StreamTriggerInput(  # type: ignore[call-arg]  # camelCase names, accepted by validation aliases
        eventType="update", streamName="todo", groupId="g", itemId="i", oldValue={"a": 1}, newValue={"a": 2}
    )
    assert (change.stream_name, change.group_id, change.item_id, change.id) == ("todo", "g", "i", "i")
    assert change["streamName"] == change["stream_name"] == "todo" and change["newValue"] == {"a": 2}
    assert change["id"] == "i" and change["event"].type == "update"
    assert change.get("missing", "dflt") == "dflt" and change.get("oldValue") == {"a": 1}
    with pytest.raises(KeyError):
        change["missing"]
    assert change == StreamTriggerInput(
        event_type="update", stream_name="todo", group_id="g", item_id="i", old_value={"a": 1}, new_value={"a": 2}
    )
    with pytest.raises(ValueError, match="event_type"):
        StreamTriggerInput(event_type="created", stream_name="todo", group_id="g")  # type: ignore[arg-type]


async def test_call_handler_runs_a_stream_step_without_declaring_its_stream() -> None:
    # Given a stream step, called by hand as in a unit test (no delivery: its stream need not be declared)
    seen: list[tuple[StreamTriggerInput, Any]] = []
    watcher = step({"name": "watch", "triggers": [stream("todo")]}, recorder(seen))
    change = StreamTriggerInput(event_type="create", stream_name="todo", group_id="g", item_id="a", data={"n": 1})
    info = TriggerInfo(type="stream", stream_name="todo", group_id="g", item_id="a")
    # When its handler is called with a change
    await call_handler(watcher, change, trigger=info)
    # Then it ran with that change and a ctx that says so
    ((got, ctx),) = seen
    assert got is change and ctx.is_stream() and ctx.trigger.stream_name == "todo"


async def test_a_change_made_through_another_connection_to_the_store_is_handled(
    start_app: StartStreamApp, stream_url: str
) -> None:
    if stream_url == "memory://":
        pytest.skip("a memory:// store is private to its StateManager: there is no other connection to it")
    # Given an app with a stream trigger, and a script's own connection to the same store
    seen: list[tuple[StreamTriggerInput, Any]] = []
    app = await start_app([step({"name": "watch", "triggers": [stream("todo")]}, recorder(seen))])
    async with StateManager.from_url(stream_url) as other:
        script = StreamManager(other.backend, STREAMS)
        # When the script writes an item (as `motia state` or another process would)
        await script.set("todo", "g", "from-script", {"n": 1})
    # Then the app's worker finds the delivery (by polling) and handles the change
    await eventually(lambda: seen, timeout=10, what="the script's change handled")
    await app.drain()
    assert [(e.event_type, e.item_id, e.data) for e, _ in seen] == [
        ("create", "from-script", {"n": 1, "id": "from-script"})
    ]
