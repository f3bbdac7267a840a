"""State triggers (SPEC 1.4, 3.1): every change reaches its subscribers with the right fields, filtered by
scope, key and condition, in commit order per key, retried and dead-lettered when the handler fails."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Any

import pytest

from motia import StateTriggerInput, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.types import TriggerInfo
from motia.state.manager import StateManager
from tests.runtime.delivery_helpers import FAST, StartApp


def recorder(seen: list[tuple[StateTriggerInput, Any]]):
    async def handler(input, ctx):
        seen.append((input, ctx))

    return handler


async def test_each_event_type_reaches_the_handler_with_its_fields(start_app: StartApp) -> None:
    # Given a step subscribed to every change
    seen: list[tuple[StateTriggerInput, Any]] = []
    app = await start_app([step({"name": "watch", "triggers": [state()]}, recorder(seen))])
    before = time.time()
    # When a key is created, updated, deleted, and a scope of two keys is cleared
    await app.state.set("carts", "c1", {"n": 1})
    await app.state.update("carts", "c1", [{"type": "increment", "path": "n", "value": 1}])
    await app.state.delete("carts", "c1")
    await app.state.set("tmp", "a", "A")
    await app.state.set("tmp", "b", "B")
    await app.state.clear("tmp")
    await app.drain()
    # Then each change arrived once, with old and new values, versions and the commit time
    events = sorted((event for event, _ in seen), key=lambda e: e.seq or 0)
    assert [(e.event_type, e.group_id, e.item_id, e.old_value, e.new_value, e.version) for e in events] == [
        ("created", "carts", "c1", None, {"n": 1}, 1),
        ("updated", "carts", "c1", {"n": 1}, {"n": 2}, 2),
        ("deleted", "carts", "c1", {"n": 2}, None, 2),
        ("created", "tmp", "a", None, "A", 1),
        ("created", "tmp", "b", None, "B", 1),
        ("deleted", "tmp", "a", "A", None, 1),
        ("deleted", "tmp", "b", "B", None, 1),
    ]
    assert all(e.type == "state" and before - 1 <= e.timestamp <= time.time() + 1 for e in events)
    # And the handler's ctx says what started it
    event, ctx = seen[0]
    assert ctx.is_state() and not ctx.is_queue()
    assert ctx.trigger == TriggerInfo(
        type="state", scope=event.scope, key=event.key, delivery_id=f"state:{event.seq}:watch", attempt=1
    )


async def test_state_trigger_input_aliases_and_item_access() -> None:
    event = StateTriggerInput(event_type="updated", scope="s", key="k", old_value=1, new_value=2, version=2)  # type: ignore[call-arg]
    assert (event.scope, event.key, event.group_id, event.item_id) == ("s", "k", "s", "k")
    assert event["scope"] == event["group_id"] == "s" and event["newValue"] == 2
    assert event.get("missing", "dflt") == "dflt" and event.get("old_value") == 1
    with pytest.raises(KeyError):
        event["missing"]
    assert event == StateTriggerInput(
        event_type="updated", group_id="s", item_id="k", old_value=1, new_value=2, version=2
    )


async def test_expiry_fires_exactly_one_expired_event(state_url: str, start_app: StartApp) -> None:
    # Given a store on a fake clock and a step watching expiries
    now = [time.time()]
    store = StateManager.from_url(state_url, clock=lambda: now[0])
    seen: list[tuple[StateTriggerInput, Any]] = []
    watcher = step({"name": "expiry", "triggers": [state(scope="sessions")]}, recorder(seen))
    app = await start_app([watcher], state=store)
    try:
        await store.set("sessions", "s1", {"user": "u1"}, ttl=60)
        await app.drain()
        # When the TTL passes; reads, purges and writes elsewhere all notice it
        now[0] += 61
        assert await store.get("sessions", "s1") is None
        await store.purge_expired()
        await store.purge_expired()
        await store.set("other", "k", 1)
        await app.drain()
        # Then one expired event carries the old value
        expired = [e for e, _ in seen if e.event_type == "expired"]
        assert [(e.group_id, e.item_id, e.old_value, e.new_value) for e in expired] == [
            ("sessions", "s1", {"user": "u1"}, None)
        ]
        assert [e.event_type for e, _ in seen] == ["created", "expired"]
    finally:
        await app.shutdown()
        await store.aclose()


async def test_scope_key_and_condition_filters(start_app: StartApp) -> None:
    # Given steps filtering by scope, by scope and key, and by sync and async conditions
    calls: dict[str, list[str]] = {"scope": [], "key": [], "sync": [], "async": []}

    def collect(name: str):
        async def handler(input, ctx):
            calls[name].append(f"{input.scope}/{input.key}:{input.event_type}")

        return handler

    async def big_async(input, ctx):
        return (input.new_value or 0) >= 10 and await ctx.state.get("flags", "on") is not None

    steps = [
        step({"name": "by-scope", "triggers": [state(scope="orders")]}, collect("scope")),
        step({"name": "by-key", "triggers": [state(scope="orders", key="o1")]}, collect("key")),
        step(
            {"name": "sync-cond", "triggers": [state(condition=lambda input: input.event_type == "deleted")]},
            collect("sync"),
        ),
        step({"name": "async-cond", "triggers": [state(scope="orders", condition=big_async)]}, collect("async")),
    ]
    app = await start_app(steps)
    # When various keys change
    await app.state.set("flags", "on", True)
    await app.state.set("orders", "o1", 5)
    await app.state.set("orders", "o2", 50)
    await app.state.set("users", "u1", 1)
    await app.state.delete("orders", "o1")
    await app.drain()
    # Then each step saw only its own; a false condition settles the delivery without running the handler
    assert sorted(calls["scope"]) == ["orders/o1:created", "orders/o1:deleted", "orders/o2:created"]
    assert calls["key"] == ["orders/o1:created", "orders/o1:deleted"]
    assert calls["sync"] == ["orders/o1:deleted"]
    assert calls["async"] == ["orders/o2:created"]
    assert await app.state.backend.pending() == 0 and await app.state.backend.dead_letters() == []


async def test_per_key_order_under_concurrent_writers(start_app: StartApp) -> None:
    # Given a slowish handler recording the versions it sees, with several deliveries running at once
    seen: dict[str, list[int]] = {}

    async def handler(input, ctx):
        await asyncio.sleep(random.random() / 500)  # uneven handler times invite reordering
        seen.setdefault(input.key, []).append(input.version)

    app = await start_app([step({"name": "ordered", "triggers": [state(scope="counters")]}, handler)])
    keys = [f"k{i}" for i in range(4)]
    # When tasks and a thread increment the same few keys concurrently
    bump = [{"type": "increment", "path": "n", "value": 1}]

    async def writer(n: int) -> None:
        for i in range(n):
            await app.state.update("counters", keys[i % len(keys)], bump)

    def thread_writer() -> None:
        for i in range(40):
            app.sync_state.update("counters", keys[(i * 3) % len(keys)], bump)  # type: ignore[union-attr]

    thread = threading.Thread(target=thread_writer)
    thread.start()
    await asyncio.gather(*(writer(40) for _ in range(5)))
    await asyncio.to_thread(thread.join)
    await app.drain(20)
    # Then every version of every key was handled exactly once, in commit order
    assert sum(len(v) for v in seen.values()) == 240
    for key in keys:
        total = (await app.state.get("counters", key))["n"]
        assert seen[key] == list(range(1, total + 1)), key


async def test_a_handler_writing_another_scope_does_not_loop(start_app: StartApp) -> None:
    # Given a handler that writes an audit record into another scope for every order change
    runs: list[str] = []

    async def audit(input, ctx):
        runs.append(input.key)
        await ctx.state.set("audit", f"{input.key}-v{input.version}", {"event": input.event_type})

    app = await start_app([step({"name": "audit", "triggers": [state(scope="orders")]}, audit)])
    # When two orders change
    await app.state.set("orders", "o1", {"total": 1})
    await app.state.set("orders", "o2", {"total": 2})
    await app.drain()
    # Then it ran once per order change: its own writes did not trigger it again
    assert sorted(runs) == ["o1", "o2"]
    assert await app.state.keys("audit") == ["o1-v1", "o2-v1"]


async def test_a_handler_writing_its_own_scope_stops_through_its_condition(start_app: StartApp) -> None:
    # Given a handler that writes the key that triggers it, guarded by a condition (as documented)
    runs: list[int] = []

    async def normalise(input, ctx):
        runs.append(input.version)
        await ctx.state.set("profiles", input.key, {**input.new_value, "name": input.new_value["name"].strip()})

    def padded(input) -> bool:
        return input.new_value is not None and input.new_value["name"] != input.new_value["name"].strip()

    trigger = state(scope="profiles", condition=padded)
    app = await start_app([step({"name": "normalise", "triggers": [trigger]}, normalise)])
    # When a profile with a padded name is stored
    await app.state.set("profiles", "p1", {"name": "  Ada "})
    await app.drain()
    # Then the handler ran once; its own write fired an event whose condition is false
    assert runs == [1]
    assert await app.state.get("profiles", "p1") == {"name": "Ada"}


async def test_failing_handler_is_retried_with_backoff_then_dead_lettered(start_app: StartApp) -> None:
    # Given a handler that always fails, with 2 retries and a short backoff
    attempts: list[tuple[int, float]] = []

    async def flaky(input, ctx):
        attempts.append((ctx.trigger.attempt, time.monotonic()))
        raise RuntimeError(f"cannot handle {input.key}")

    ok: list[str] = []

    async def fine(input, ctx):
        ok.append(input.key)

    trigger = state(scope="jobs", config={"max_retries": 2, "backoff": 0.05})
    app = await start_app(
        [step({"name": "flaky", "triggers": [trigger]}, flaky), step({"name": "fine", "triggers": [state()]}, fine)]
    )
    # When a key changes
    await app.state.set("jobs", "j1", 1)
    await app.drain()
    # Then 3 attempts ran, each after a growing wait, and the event is a dead letter with the error
    assert [n for n, _ in attempts] == [1, 2, 3]
    gaps = [b - a for (_, a), (_, b) in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.05 * 0.9 and gaps[1] >= 0.1 * 0.9
    (letter,) = await app.state.backend.dead_letters("flaky")
    assert letter.kind == "state" and letter.attempts == 3 and "RuntimeError: cannot handle j1" in letter.error
    # And the other subscriber was not held up
    assert ok == ["j1"]


async def test_a_failed_event_does_not_block_its_key_forever(start_app: StartApp) -> None:
    # Given a handler that fails once for version 1 only
    handled: list[int] = []
    failed: set[int] = set()

    async def handler(input, ctx):
        if input.version == 1 and 1 not in failed:
            failed.add(1)
            raise ValueError("first time")
        handled.append(input.version)

    trigger = state(scope="s", config={"max_retries": 1, "backoff": 0.01})
    app = await start_app([step({"name": "once-flaky", "triggers": [trigger]}, handler)])
    # When the key is written twice in a row
    await app.state.set("s", "k", 1)
    await app.state.set("s", "k", 2)
    await app.drain()
    # Then version 2 waited for version 1's retry: order holds across retries
    assert handled == [1, 2]


async def test_def_handlers_and_one_argument_handlers(start_app: StartApp) -> None:
    seen: list[str] = []

    def sync_handler(input, ctx):
        seen.append(f"sync:{input.key}:{ctx.state.get('s', input.key)}")

    def one_arg(input):
        seen.append(f"one:{input.key}")

    app = await start_app(
        [
            step({"name": "sync", "triggers": [state(scope="s")]}, sync_handler),
            step({"name": "one", "triggers": [state(scope="s")]}, one_arg),
        ]
    )
    await app.state.set("s", "k", 7)
    await app.drain()
    assert sorted(seen) == ["one:k", "sync:k:7"]


async def test_events_are_published_to_the_console_hub_once(start_app: StartApp) -> None:
    # Given two steps receiving the same events, and a live subscriber of the app's event hub
    app = await start_app(
        [
            step({"name": "a", "triggers": [state()]}, recorder([])),
            step({"name": "b", "triggers": [state()]}, recorder([])),
        ]
    )
    feed, _ = app.state_events.subscribe()
    # When a key changes
    await app.state.set("s", "k", 1)
    await app.drain()
    # Then the feed shows the event once
    event = await asyncio.wait_for(feed.next(), 5)
    assert event is not None and (event["event_type"], event["group_id"], event["item_id"]) == ("created", "s", "k")
    assert app.state_events.recent() == [event]
    feed.close()


async def test_without_state_steps_the_outbox_is_still_drained(state_url: str) -> None:
    # Given a store whose events were enabled by another process, and an app without state triggers
    store = StateManager.from_url(state_url)
    await store.backend.enable_events()
    app = MotiaApp([], state=store, cron=False, delivery=FAST)
    await app.startup()
    try:
        # When it writes
        for i in range(5):
            await store.set("s", f"k{i}", i)
        await app.drain()
        # Then the events were consumed (nothing subscribes, so nothing is pending)
        assert await store.backend.dispatch_events([]) == 0
        assert await store.backend.pending() == 0
    finally:
        await app.shutdown()
        await store.aclose()


async def test_delivery_options_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTIA_DELIVERY_LEASE", "1.5")
    monkeypatch.setenv("MOTIA_DELIVERY_POLL_INTERVAL", "0.25")
    monkeypatch.setenv("MOTIA_DELIVERY_CONCURRENCY", "3")
    assert DeliveryOptions.from_env() == DeliveryOptions(lease=1.5, poll_interval=0.25, concurrency=3)
    assert MotiaApp([], state="memory://").delivery_options == DeliveryOptions(1.5, 0.25, 3)
    monkeypatch.setenv("MOTIA_DELIVERY_LEASE", "soon")
    from motia import ConfigError

    with pytest.raises(ConfigError, match="MOTIA_DELIVERY_LEASE"):
        DeliveryOptions.from_env()
    with pytest.raises(ConfigError, match="concurrency"):
        DeliveryOptions(concurrency=0)


async def test_a_lone_write_is_dispatched_without_waiting_out_the_batch_window(start_app: StartApp) -> None:
    # Given a batch window far longer than the test may wait (the poll timer would never mask it)
    handled = asyncio.Event()

    async def on_change(input, ctx):
        handled.set()

    app = await start_app(
        [step({"name": "on_change", "triggers": [state(scope="s")]}, on_change)],
        delivery=DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=8, batch_window=60.0),
    )
    assert app.delivery is not None
    dispatcher = app.delivery.dispatcher
    idle = asyncio.Event()
    after_cycle = dispatcher._after_cycle

    def cycled() -> None:
        after_cycle()
        idle.set()

    dispatcher._after_cycle = cycled
    await asyncio.wait_for(idle.wait(), 10)  # the dispatcher has run a cycle and waits for a wake-up
    # When one write comes after that quiet period (no burst on)
    await app.state.set("s", "k", 1)
    # Then its handler runs at once, not a window later
    await asyncio.wait_for(handled.wait(), 10)
