"""A claim's runs take turns in one task (issue 15): each in its own context and under its own name, a run that
pauses keeps the task to itself and the runs after it go on in a new one, so what asyncio ties to the current
task stays with one run."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from motia.runtime.handler_tasks import Run, Running, start_runs
from motia.state.backends.types import Delivery

_var: contextvars.ContextVar[str] = contextvars.ContextVar("handler_tasks_test", default="unset")


def delivery(n: int) -> Delivery:
    return Delivery(f"state:{n}:watch", "watch", "state", b"{}", 1, 0.0)


def runs_of(*bodies: Callable[[Delivery], Coroutine[Any, Any, None]]) -> list[Run]:
    return [(delivery(n), body, (delivery(n),)) for n, body in enumerate(bodies, 1)]


async def settle(running: Running) -> None:
    """Wait until every task in ``running`` (including those handed the rest of a claim) is done."""
    while tasks := {task for task, _ in running.values() if not task.done()}:
        await asyncio.wait(tasks)


def test_runs_that_return_take_turns_in_one_task_each_in_its_own_context_and_name(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given three runs that record their task, its name and the variable, then set the variable
        seen: list[tuple[asyncio.Task[Any] | None, str, str]] = []

        async def body(d: Delivery) -> None:
            task = asyncio.current_task()
            seen.append((task, task.get_name() if task else "", _var.get()))
            _var.set(d.id)

        running: Running = {}
        # When they are started together
        start_runs(asyncio.get_running_loop(), runs_of(body, body, body), running)
        await settle(running)
        # Then they ran in claim order, in one task that is not the caller's, each under its delivery's name, and
        # none saw what another set (nor does the caller)
        assert [(name, value) for _, name, value in seen] == [
            (f"motia-delivery:{delivery(n).id}", "unset") for n in (1, 2, 3)
        ]
        tasks = {task for task, _, _ in seen}
        assert len(tasks) == 1 and asyncio.current_task() not in tasks
        assert _var.get() == "unset"

    run_loop(main())


def test_a_run_that_pauses_keeps_its_task_and_the_runs_after_it_go_on_in_a_new_one(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a first run that waits for what the third sets, and records its task before and after the wait
        released = asyncio.Event()
        order: list[str] = []
        first_tasks: list[asyncio.Task[Any] | None] = []

        async def waits(d: Delivery) -> None:
            order.append(d.id)
            _var.set("first")
            first_tasks.append(asyncio.current_task())
            await released.wait()
            first_tasks.append(asyncio.current_task())
            assert _var.get() == "first"  # its resumptions run in its own context

        async def returns(d: Delivery) -> None:
            order.append(d.id)
            assert _var.get() == "unset"

        async def releases(d: Delivery) -> None:
            order.append(d.id)
            released.set()

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(waits, returns, releases), running)
        claim_task = running[delivery(1).id][0]
        # When the first pauses
        await asyncio.sleep(0)
        # Then it keeps the claim's task, under its own name, and the others are handed a new task
        assert running[delivery(1).id][0] is claim_task and claim_task.get_name() == f"motia-delivery:{delivery(1).id}"
        rest = running[delivery(2).id][0]
        assert rest is not claim_task and running[delivery(3).id][0] is rest
        await asyncio.wait_for(settle(running), 5)
        # And all ran, in claim order, the first in one task from start to end
        assert order == [delivery(n).id for n in (1, 2, 3)]
        assert first_tasks == [claim_task, claim_task]

    run_loop(main())


def test_asyncio_timeout_inside_a_run_before_its_first_pause_times_out_that_run_only(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a run that enters asyncio.timeout before its first await, and one after it
        outcomes: list[str] = []
        caller = asyncio.current_task()

        async def times_out(d: Delivery) -> None:
            try:
                async with asyncio.timeout(0.01):
                    await asyncio.Event().wait()
            except TimeoutError:
                outcomes.append("timed out")

        async def after(d: Delivery) -> None:
            await asyncio.sleep(0)
            outcomes.append("after")

        running: Running = {}
        # When they run
        start_runs(asyncio.get_running_loop(), runs_of(times_out, after), running)
        await asyncio.wait_for(settle(running), 5)
        # Then the timeout cancelled its own run only: the other finished, the caller was never cancelled
        assert sorted(outcomes) == ["after", "timed out"]
        assert caller is not None and not caller.cancelling()

    run_loop(main())


def test_a_task_group_inside_a_run_has_that_runs_task_as_its_parent(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a run that opens a TaskGroup before its first await and a child that fails
        outcomes: list[str] = []

        async def failing_child() -> None:
            raise ValueError("child")

        async def grouped(d: Delivery) -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(failing_child())
                    await asyncio.Event().wait()  # cancelled by the group when its child fails
            except* ValueError:
                outcomes.append("group failed")

        async def after(d: Delivery) -> None:
            await asyncio.sleep(0)
            outcomes.append("after")

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(grouped, after), running)
        await asyncio.wait_for(settle(running), 5)
        # Then the group cancelled its own run's wait, and nothing else
        assert sorted(outcomes) == ["after", "group failed"]

    run_loop(main())


def test_a_run_that_cancels_its_own_task_leaves_the_runs_after_it_a_task_not_cancelled(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a run that cancels its task and returns, and one after it that pauses
        outcomes: list[str] = []

        async def cancels_itself(d: Delivery) -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            outcomes.append("cancelled its task")

        async def after(d: Delivery) -> None:
            await asyncio.sleep(0)
            outcomes.append("after")

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(cancels_itself, after), running)
        first = running[delivery(1).id][0]
        await asyncio.wait_for(settle(running), 5)
        # Then its own task ended cancelled, as a task of its own would, and the next ran to its end elsewhere
        assert outcomes == ["cancelled its task", "after"]
        assert first.cancelled() and running[delivery(2).id][0] is not first

    run_loop(main())


def test_a_run_that_fails_is_logged_and_the_runs_after_it_still_run(
    run_loop: Callable[[Coroutine[Any, Any, None]], None], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        # Given a run that raises, one that raises CancelledError without being cancelled, and one after them
        ran: list[str] = []

        async def raises(d: Delivery) -> None:
            raise RuntimeError("broken run")

        async def cancelled(d: Delivery) -> None:
            raise asyncio.CancelledError

        async def after(d: Delivery) -> None:
            ran.append(d.id)

        running: Running = {}
        with caplog.at_level(logging.ERROR, logger="motia.runtime"):
            start_runs(asyncio.get_running_loop(), runs_of(raises, cancelled, after), running)
            await asyncio.wait_for(settle(running), 5)
        # Then the failure is logged with its delivery, and the last run ran
        assert f"delivery {delivery(1).id}: its run failed" in caplog.text and "broken run" in caplog.text
        assert ran == [delivery(3).id]

    run_loop(main())


def test_a_paused_run_cancelled_with_its_task_gets_the_cancellation_in_its_own_context(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a run that pauses after setting the variable, then records what its cleanup sees
        cleanup: list[str] = []

        async def waits(d: Delivery) -> None:
            _var.set("mine")
            try:
                await asyncio.Event().wait()
            finally:
                cleanup.append(_var.get())

        async def returns(d: Delivery) -> None:
            pass

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(waits, returns), running)
        await asyncio.sleep(0)
        task = running[delivery(1).id][0]
        # When its task is cancelled (a shutdown)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Then the run got it and cleaned up in its own context
        assert cleanup == ["mine"]

    run_loop(main())


def test_a_claims_task_cancelled_before_it_started_leaves_no_coroutine_never_awaited(
    run_loop: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    async def main() -> None:
        # Given a claim's runs started, their task cancelled before its first step
        made: list[str] = []

        async def body(d: Delivery) -> None:
            made.append(d.id)

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(body, body), running)
        task = running[delivery(1).id][0]
        task.cancel()
        # When it ends and everything is collected
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(asyncio.CancelledError):
                await task
            gc.collect()
        # Then no run's coroutine was made, so none is left never awaited
        assert made == []
        assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]

    run_loop(main())


def test_a_run_alone_runs_in_its_task_directly(run_loop: Callable[[Coroutine[Any, Any, None]], None]) -> None:
    async def main() -> None:
        # Given one run
        tasks: list[asyncio.Task[Any] | None] = []

        async def body(d: Delivery) -> None:
            tasks.append(asyncio.current_task())

        running: Running = {}
        start_runs(asyncio.get_running_loop(), runs_of(body), running)
        await settle(running)
        # Then its task is named after it and ran it
        (task,) = tasks
        assert task is running[delivery(1).id][0] and task is not None
        assert task.get_name() == f"motia-delivery:{delivery(1).id}"

    run_loop(main())
