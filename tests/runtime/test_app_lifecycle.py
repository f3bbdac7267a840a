"""``MotiaApp.startup`` undoes everything it did when it fails (issue 11, #10), and ``shutdown`` always
completes its cleanup."""

from __future__ import annotations

import pytest

import motia
from motia import MotiaError, StateClosedError, queue, state, step
from motia.runtime import queue as runtime_queue
from motia.runtime.app import MotiaApp
from motia.state.sync import stateManager
from motia.testing import memory_state


async def noop(input, ctx):
    return None


STEPS = [
    step({"name": "worker", "triggers": [queue("jobs")]}, noop),
    step({"name": "watcher", "triggers": [state(scope="watched")]}, noop),
]


async def test_a_failed_startup_leaves_no_global_state_behind() -> None:
    # Given an app over a store that is already closed (startup fails when delivery enables events)
    closed = memory_state()
    await closed.aclose()
    app = MotiaApp(STEPS, state=closed, cron=False)
    bindings_before = list(runtime_queue._apps)

    # When startup fails
    with pytest.raises(StateClosedError):
        await app.startup()

    # Then motia.stateManager does not point at the failed app's store
    assert stateManager._target()[0] is not closed
    # And motia.enqueue is not bound to the failed app
    assert runtime_queue._apps == bindings_before
    with pytest.raises(MotiaError, match="needs a running app"):
        await motia.enqueue({"topic": "jobs", "data": {}})
    # And no handler thread pool, task or worker is left running
    assert app._executor is None and app.delivery is None and app._sweeper is None and app._scheduler is None
    assert not app.started
    await app.shutdown()  # a no-op, never an error


async def test_startup_can_be_retried_after_a_failure() -> None:
    # Given an app whose first startup fails on a closed store
    closed = memory_state()
    await closed.aclose()
    failed = MotiaApp(STEPS, state=closed, cron=False)
    with pytest.raises(StateClosedError):
        await failed.startup()
    # When another app starts on a good store
    good = MotiaApp(STEPS, state=memory_state(), cron=False)
    await good.startup()
    try:
        # Then the globals are the good app's alone
        assert stateManager._target()[0] is good.state
        await motia.enqueue({"topic": "jobs", "data": {"n": 1}})
        await good.drain()
    finally:
        await good.shutdown()
    assert runtime_queue._apps == []
