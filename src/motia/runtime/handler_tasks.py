"""The tasks a claim's handlers run in: one task per claim, taken in turn by its handlers (issue 15).

A task per delivery cost the worker 8-10k instructions per delivery (its build, its entry in asyncio's set of
all tasks, its first step's handle), most of it for handlers that return without ever pausing. So the
deliveries of one claim start, in claim order, in one task: each runs in a copy of the context of its own, as
a task of its own would run it, and ``asyncio.current_task()`` inside it is the task it started in, under its
own name (``motia-delivery:<id>``). A run that pauses (awaits something not ready yet) keeps that task to
itself until it ends, so what asyncio ties to the current task (``asyncio.timeout``, ``TaskGroup``, anyio's
cancel scopes, a cancellation) stays with that one run, and the claim's runs after it go on, still in order,
in a new task. Python 3.12's eager tasks would save less (they still build a task per run) and are not in
3.11.

A claim is at most the worker's free slots, so one task never runs more handlers in a row than the worker
may run at once: the loop gets no fewer turns than with a task per delivery, whose first steps all ran in
the loop's next round anyway.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from motia.state.backends.types import Delivery

__all__ = ["Run", "Running", "start_runs"]

logger = logging.getLogger("motia.runtime")

#: What ``next`` returns for a run that returned (a run that pauses yields a future, or ``None``).
_RETURNED = object()

#: One delivery's run: the delivery, and the coroutine function and arguments of its run (the coroutine is
#: made only when its turn comes, so a task cancelled before it started leaves no coroutine never awaited).
Run = tuple[Delivery, Callable[..., Coroutine[Any, Any, None]], tuple[Any, ...]]
#: The worker's running deliveries by id, each with the task it runs (or will start) in.
Running = dict[str, tuple["asyncio.Task[None]", Delivery]]


def start_runs(loop: asyncio.AbstractEventLoop, runs: list[Run], running: Running, *, shared: bool = True) -> None:
    """Start ``runs`` (a claim's, in claim order) in one task, recorded in ``running`` for each delivery.

    One run alone runs in its task directly (nothing to take turns with). ``shared=False`` gives each run a task
    of its own, made now in claim order: for deliveries that must *start* in claim order across claims (several
    of one key in flight at once), since the runs after one that pauses go on in a task made after the tasks of
    any claim started meanwhile.
    """
    if not shared and len(runs) > 1:
        for each in runs:
            start_runs(loop, [each], running)
        return
    delivery, run, args = runs[0]
    coro = run(*args) if len(runs) == 1 else _in_turn(runs, running)
    name = f"motia-delivery:{delivery.id}"
    # As the loop's create_task makes it (uvloop's names each task twice: `Task-<n>`, then ours).
    if loop.get_task_factory() is None:
        task = asyncio.Task(coro, loop=loop, name=name)
    else:
        task = loop.create_task(coro, name=name)
    for delivery, _, _ in runs:
        running[delivery.id] = (task, delivery)


async def _in_turn(runs: list[Run], running: Running) -> None:
    """Run ``runs`` one after the other in this task, each in a context of its own, until one pauses: that one
    keeps this task, and the runs after it are started in a new one."""
    task = asyncio.current_task()
    assert task is not None  # a task's coroutine
    last = len(runs) - 1
    for index, (delivery, run, args) in enumerate(runs):
        if index:
            task.set_name(f"motia-delivery:{delivery.id}")
        context = contextvars.copy_context()
        coro = run(*args)
        try:
            # `next` with a default: a run that returns ends without a StopIteration raised into this frame
            # (~900 instructions each, issue 15).
            yielded = context.run(next, coro.__await__(), _RETURNED)
        except asyncio.CancelledError:
            pass  # a run that ends cancelled, as its own task would have: nothing to report
        except Exception:
            logger.exception("delivery %s: its run failed", delivery.id)
        except BaseException:  # KeyboardInterrupt, SystemExit: they stop the loop, but the runs after it start
            if index < last:
                start_runs(task.get_loop(), runs[index + 1 :], running)
            raise
        else:
            if yielded is not _RETURNED:  # it paused: this task is its own from now on
                if index < last:
                    start_runs(task.get_loop(), runs[index + 1 :], running)
                await _carry_on(coro, context, yielded)
                return
        if task.cancelling() and index < last:  # a run cancelled its task: the others go on in a new one
            start_runs(task.get_loop(), runs[index + 1 :], running)
            return


@types.coroutine
def _carry_on(coro: Coroutine[Any, Any, None], context: contextvars.Context, yielded: Any) -> Generator[Any, Any, None]:
    """The rest of a run that paused: what its coroutine yields goes to the task, and the task's resumptions (a
    value, or an exception thrown in: a cancellation) go back into it, in the run's own context."""
    while True:
        thrown: BaseException | None = None
        try:
            sent = yield yielded
        except GeneratorExit:  # this task's coroutine is closed: so is the run's
            context.run(coro.close)
            raise
        except BaseException as exc:
            thrown = exc
        try:
            yielded = context.run(coro.send, sent) if thrown is None else context.run(coro.throw, thrown)
        except StopIteration:
            return
