"""Each delivery's handler runs in a task of its own, made as the loop would make it (issue 15 made the worker
build the task itself): its name, its own copy of the context, the loop's task factory when one is set."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, cast

from motia import state, step
from motia.runtime.app import MotiaApp
from motia.state.backends._events import state_event_payload
from motia.state.backends.types import NewDelivery
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
