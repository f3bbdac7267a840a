"""Each delivery's handler runs in a task made as the loop would make it (issue 15 made the worker build the task
itself): under its own name, in its own copy of the context, from the loop's task factory when one is set. A
claim's handlers take turns in one task; one that pauses keeps that task to itself
(:mod:`motia.runtime.handler_tasks`)."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, cast

from motia import state, step
from motia.runtime.app import MotiaApp
from motia.runtime.context import current_run
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.state_triggers import state_input
from motia.state import values
from motia.state.backends._events import state_event_payload
from motia.state.backends.types import NewDelivery
from motia.state.manager import StateManager
from tests.polling import eventually
from tests.runtime.delivery_helpers import FAST

_seen_by_handler: contextvars.ContextVar[str] = contextvars.ContextVar("seen_by_handler", default="unset")


async def test_each_handler_runs_in_its_own_named_task_with_its_own_context() -> None:
    # Given a handler that records its task and context, then sets a context variable
    runs: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        runs.append((task.get_name(), ctx.trigger.delivery_id, _seen_by_handler.get()))
        _seen_by_handler.set(input.key)
        if len(runs) == 3:
            done.set()

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    await app.startup()
    try:
        # When three changes are delivered
        for key in ("a", "b", "c"):
            await app.state.set("s", key, 1)
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await app.shutdown()
    # Then each ran in a task named after its delivery, and none saw what another set in its context
    assert sorted(runs) == sorted((f"motia-delivery:{delivery}", delivery, "unset") for _, delivery, _ in runs)
    assert len({delivery for _, delivery, _ in runs}) == 3


async def test_the_loops_task_factory_makes_the_handlers_task() -> None:
    # Given a task factory on the running loop
    loop = asyncio.get_running_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    handled = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        handled.set()

    loop.set_task_factory(cast(Any, factory))  # uvloop passes context=...: typeshed says it must not
    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    try:
        await app.startup()
        # When a change is delivered
        await app.state.set("s", "k", 1)
        await asyncio.wait_for(handled.wait(), 10)
    finally:
        loop.set_task_factory(None)
        await app.shutdown()
    # Then the handler's task came from the factory, with the worker's name for it
    names = [task.get_name() for task in made]  # named after the factory returned, as create_task does
    assert any(name.startswith("motia-delivery:state:") for name in names), names


async def test_a_delivery_no_trigger_can_take_is_dead_lettered_and_frees_its_slot() -> None:
    # Given a step on scope "s" and, in its store, a state delivery of another scope and one of its own
    handled = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        handled.set()

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    await app.startup()
    try:
        payload = state_event_payload(1, "created", "other", "k", None, b"1", 1, 1.0)
        await app.state.backend.enqueue([NewDelivery("state:1:watch", "watch", "state", payload)])
        # When the worker claims it
        await app.drain()
        # Then it is a dead letter saying why, and the worker goes on with the next delivery
        letters = await app.state.backend.dead_letters("watch")
        assert [(letter.id, "undeliverable" in letter.error) for letter in letters] == [("state:1:watch", True)]
        await app.state.set("s", "k", 1)
        await asyncio.wait_for(handled.wait(), 10)
        await app.drain()
        assert app.delivery is not None and not app.delivery._running and not app.delivery._per_step
    finally:
        await app.shutdown()


async def _waiting(app: MotiaApp, keys: list[str]) -> list[str]:
    """State deliveries of step ``watch`` for ``keys`` added in one store call (so one claim can take them all);
    their ids, in order."""
    ids = [f"state:{n}:watch" for n in range(1, len(keys) + 1)]
    payloads = [state_event_payload(n, "created", "s", key, None, b"1", 1, 1.0) for n, key in enumerate(keys, 1)]
    await app.state.backend.enqueue(
        [NewDelivery(id_, "watch", "state", p) for id_, p in zip(ids, payloads, strict=True)]
    )
    return ids


async def test_a_claims_handlers_take_turns_in_a_task_each_with_its_own_context_and_run() -> None:
    # Given a handler that records its task, its name, what it sees of the context, then sets a variable
    runs: list[tuple[asyncio.Task[Any] | None, str, str, str, bool]] = []
    done = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        task = asyncio.current_task()
        name = task.get_name() if task else ""
        runs.append((task, name, ctx.trigger.delivery_id, _seen_by_handler.get(), current_run.get() is ctx))
        _seen_by_handler.set(input.key)
        if len(runs) == 4:
            done.set()

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    await app.startup()
    try:
        # When four deliveries are claimed together, then one more alone
        ids = await _waiting(app, ["a", "b", "c", "d"])
        await asyncio.wait_for(done.wait(), 10)
        done.clear()
        await app.state.set("s", "e", 1)
        await eventually(lambda: len(runs) == 5, what="the later claim's handler ran")
    finally:
        await app.shutdown()
    # Then the four took turns in one task, in claim order, each under its own name and with its own ctx as the
    # current run, none seeing what another set; nor did the later claim's handler (the worker's context is clean)
    assert [(name, delivery, seen, own) for _, name, delivery, seen, own in runs[:4]] == [
        (f"motia-delivery:{id_}", id_, "unset", True) for id_ in ids
    ]
    assert len({task for task, *_ in runs[:4]}) == 1
    assert runs[4][3:] == ("unset", True)


async def test_a_handler_that_pauses_keeps_its_own_task_which_the_worker_tracks_and_its_claim_goes_on() -> None:
    # Given a handler whose first delivery waits for what the claim's last one does
    released = asyncio.Event()
    seen: dict[str, Any] = {}
    done = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        if input.key == "a":
            seen["before"] = asyncio.current_task()
            assert app.delivery is not None
            seen["tracked"] = app.delivery._running[ctx.trigger.delivery_id][0]
            await released.wait()
            seen["after"] = asyncio.current_task()
            done.set()
        elif input.key == "c":
            released.set()

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    await app.startup()
    try:
        # When the three are claimed together
        await _waiting(app, ["a", "b", "c"])
        # Then the first, paused, did not hold the others back, and ran in one task the worker tracked
        await asyncio.wait_for(done.wait(), 10)
        await app.drain()
    finally:
        await app.shutdown()
    assert seen["before"] is seen["after"] is seen["tracked"]
    assert seen["before"].get_name() == "motia-delivery:state:1:watch"


async def test_asyncio_timeout_in_a_handler_before_its_first_await_fails_that_attempt_only() -> None:
    # Given a handler that enters asyncio.timeout at once and, on its first attempt, waits past it
    outcomes: list[tuple[str, int]] = []

    async def handler(input: Any, ctx: Any) -> None:
        async with asyncio.timeout(0.02):
            if input.key == "slow" and ctx.trigger.attempt == 1:
                await asyncio.Event().wait()
            await asyncio.sleep(0)
        outcomes.append((input.key, ctx.trigger.attempt))

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s", config={"backoff_delay_ms": 10})]}, handler)],
        state="memory://",
        cron=False,
        delivery=FAST,
    )
    await app.startup()
    try:
        # When it is claimed with others
        await _waiting(app, ["slow", "b", "c"])
        await app.drain()
        # Then the timeout failed that attempt only (retried, then handled), and the worker still delivers
        await app.state.set("s", "later", 1)
        await app.drain()
    finally:
        await app.shutdown()
    assert sorted(outcomes) == [("b", 1), ("c", 1), ("later", 1), ("slow", 2)]


async def test_no_claims_task_runs_more_handlers_than_the_worker_runs_at_once() -> None:
    # Given ten deliveries waiting and a worker that runs four at once, and a handler that never pauses
    tasks: list[asyncio.Task[Any] | None] = []

    async def handler(input: Any, ctx: Any) -> None:
        tasks.append(asyncio.current_task())

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)],
        state="memory://",
        cron=False,
        delivery=DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=4),
    )
    await app.startup()
    try:
        # When they are handled
        await _waiting(app, [f"k{n}" for n in range(10)])
        await app.drain()
    finally:
        await app.shutdown()
    # Then no task ran more than four of them in a row: the loop got its turns as with a task per delivery
    assert len(tasks) == 10
    assert max(tasks.count(task) for task in tasks) <= 4


async def test_shutdown_releases_a_paused_handler_of_a_claim_whose_others_returned(tmp_path: Any) -> None:
    # Given a claim of three whose first handler never returns
    started = asyncio.Event()

    async def handler(input: Any, ctx: Any) -> None:
        if input.key == "a":
            started.set()
            await asyncio.Event().wait()

    store = StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}")
    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)],
        state=store,
        cron=False,
        delivery=FAST,
        shutdown_timeout=0.05,
    )
    await app.startup()
    try:
        ids = await _waiting(app, ["a", "b", "c"])
        await asyncio.wait_for(started.wait(), 5)
        await eventually(
            lambda: app.delivery is not None and len(app.delivery._running) == 1,
            timeout=5,
            what="one delivery left running",
        )
    finally:
        # When the app shuts down
        await app.shutdown()
    # Then the paused one is claimable again at once, its attempt counted, and the others were completed
    try:
        (delivery,) = await store.backend.claim(["watch"], owner="next", limit=5, lease=5)
        assert (delivery.id, delivery.attempts) == (ids[0], 2)
    finally:
        await store.aclose()


async def test_a_state_handlers_input_and_the_console_feed_are_what_the_decoded_payload_gives() -> None:
    # Given state deliveries whose values hold a big int, a float, text beyond ASCII, nesting, and a traceparent
    got: list[Any] = []

    async def handler(input: Any, ctx: Any) -> None:
        got.append(input)

    app = MotiaApp(
        [step({"name": "watch", "triggers": [state(scope="s")]}, handler)], state="memory://", cron=False, delivery=FAST
    )
    new_values = [
        b"123456789012345678901234567890",
        b"1764480000.123456",
        b'"\\u00e9\xf0\x9f\x98\x80"',
        b'{"a":[1,{}]}',
    ]
    payloads = [
        state_event_payload(n, "updated", "s", f"k{n}", b'{"old":true}', value, n + 1, 1.5 + n, "00-abc-def-01")
        for n, value in enumerate(new_values, 1)
    ]
    await app.startup()
    try:
        # When they are delivered
        await app.state.backend.enqueue(
            [NewDelivery(f"state:{n}:watch", "watch", "state", p) for n, p in enumerate(payloads, 1)]
        )
        await app.drain()
        feed = app.state_events.recent()
    finally:
        await app.shutdown()
    # Then each input is the one validated from the decoded payload, and the feed shows the decoded payload itself
    decoded = [values.decode(payload) for payload in payloads]
    assert sorted(got, key=lambda event: event.seq) == [state_input(fields) for fields in decoded]
    assert [{k: v for k, v in event.items() if k != "id"} for event in feed] == decoded
    assert got[0].new_value == 123456789012345678901234567890 and feed[0]["traceparent"] == "00-abc-def-01"
