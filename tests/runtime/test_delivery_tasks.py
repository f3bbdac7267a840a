"""Each delivery's handler runs in a task of its own, made as the loop would make it (issue 15 made the worker
build the task itself): its name, its own copy of the context, the loop's task factory when one is set."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any, cast

from motia import state, step
from motia.runtime.app import MotiaApp
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
