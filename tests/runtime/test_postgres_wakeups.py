"""On PostgreSQL an app's workers are woken by other processes' commits (``LISTEN``/``NOTIFY``), not by their
poll: with a poll interval far longer than the test, a message enqueued or a state change made through another
connection to the store is handled within seconds; a delivery due later (a delay, a retry's backoff) is handled
when due, from the store's ``next_due``; and an idle app leaves the store alone."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motia import queue, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.backends.base import NewDelivery
from motia.state.manager import StateManager
from tests.polling import eventually

#: Longer than any wait below: what is handled within them was woken by a notification.
NEVER = DeliveryOptions(poll_interval=600)

_schemas = itertools.count()


@pytest.fixture
def url(postgres_server: Any) -> str:
    return f"{postgres_server.url}?schema=wake{next(_schemas)}"


@pytest.fixture
async def other(url: str) -> AsyncIterator[StateManager]:
    """Another connection to the store, as another process would have."""
    manager = StateManager.from_url(url)
    yield manager
    await manager.aclose()


async def started(url: str, steps: list[Any]) -> MotiaApp:
    app = MotiaApp(steps, state=url, cron=False, delivery=NEVER, shutdown_timeout=2.0)
    await app.startup()
    backend: Any = app.state.backend
    await eventually(lambda: backend._notifier.listening, what="the app listening for wake-ups")
    return app


async def test_a_message_enqueued_elsewhere_wakes_the_idle_worker(url: str, other: StateManager) -> None:
    handled: list[int] = []
    arrived = asyncio.Event()

    async def job(input: Any, ctx: Any) -> None:
        handled.append(input)
        arrived.set()

    app = await started(url, [step({"name": "job", "triggers": [queue("jobs")]}, job)])
    try:
        for n in (1, 2):  # the second finds the worker idle for sure: it handled the first and waits
            arrived.clear()
            payload = b'{"topic":"jobs","data":%d,"trace_id":null}' % n
            assert await other.backend.enqueue([NewDelivery(f"m{n}>job", "job", "queue", payload)]) == 1
            await asyncio.wait_for(arrived.wait(), 20)
    finally:
        await app.shutdown()
    assert handled == [1, 2]


async def test_a_state_change_made_elsewhere_wakes_the_idle_dispatcher(url: str, other: StateManager) -> None:
    seen: list[Any] = []
    arrived = asyncio.Event()

    async def watch(input: Any, ctx: Any) -> None:
        seen.append(input.new_value)
        arrived.set()

    app = await started(url, [step({"name": "watch", "triggers": [state(scope="orders")]}, watch)])
    try:
        for n in (1, 2):
            arrived.clear()
            await other.set("orders", "o1", {"n": n})
            await asyncio.wait_for(arrived.wait(), 20)
    finally:
        await app.shutdown()
    assert seen == [{"n": 1}, {"n": 2}]


async def test_a_delayed_message_enqueued_elsewhere_is_handled_when_due(url: str, other: StateManager) -> None:
    handled: list[float] = []
    arrived = asyncio.Event()

    async def job(input: Any, ctx: Any) -> None:
        handled.append(time.monotonic())
        arrived.set()

    app = await started(url, [step({"name": "job", "triggers": [queue("jobs")]}, job)])
    try:
        # Given an idle worker that never polls within the test
        # When another process enqueues a message delayed by 1.5 s
        sent = time.monotonic()
        payload = b'{"topic":"jobs","data":1,"trace_id":null}'
        await other.backend.enqueue([NewDelivery("m1>job", "job", "queue", payload, delay=1.5)])
        # Then it is handled once due (the notification made the worker ask when), not before
        await asyncio.wait_for(arrived.wait(), 20)
    finally:
        await app.shutdown()
    assert handled[0] - sent >= 1.4


async def test_a_retry_is_handled_after_its_backoff_without_polling(url: str) -> None:
    attempts: list[float] = []
    done = asyncio.Event()

    async def flaky(input: Any, ctx: Any) -> None:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")
        done.set()

    trigger = queue("jobs", config={"max_retries": 2, "backoff": 1.0})
    app = await started(url, [step({"name": "flaky", "triggers": [trigger]}, flaky)])
    try:
        # When a message's first attempt fails (backoff 1 s) on a worker that never polls within the test
        await app.state.backend.enqueue(
            [NewDelivery("m1>flaky", "flaky", "queue", b'{"topic":"jobs","data":1,"trace_id":null}')]
        )
        # Then the second attempt runs once the backoff has passed
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await app.shutdown()
    assert len(attempts) == 2 and attempts[1] - attempts[0] >= 0.9


async def test_an_idle_app_does_not_poll_the_store(url: str) -> None:
    async def job(input: Any, ctx: Any) -> None:
        pass

    async def watch(input: Any, ctx: Any) -> None:
        pass

    steps = [
        step({"name": "job", "triggers": [queue("jobs")]}, job),
        step({"name": "watch", "triggers": [state(scope="orders")]}, watch),
    ]
    # Given an app with the default poll interval (0.1 s), listening for wake-ups
    app = MotiaApp(steps, state=url, cron=False, shutdown_timeout=2.0)
    await app.startup()
    try:
        backend: Any = app.state.backend
        await eventually(lambda: backend.wakes_other_processes, what="the app listening for wake-ups")
        await app.state.set("orders", "o1", {"n": 1})  # a commit, then idle
        await app.drain()
        # When it is idle for 1.5 s (every call to the store counted)
        calls: list[str] = []
        for name in ("_fetch", "_transact", "_write_statement"):
            method = getattr(backend, name)

            def counted(*args: Any, _method: Any = method, _name: str = name, **kwargs: Any) -> Any:
                calls.append(_name)
                return _method(*args, **kwargs)

            setattr(backend, name, counted)
        await asyncio.sleep(1.5)  # a measurement window, not a synchronisation: nothing should happen in it
        # Then it made (almost) no call: polling every 0.1 s would have made 30 or more (the dispatcher and
        # the worker each look every 0.1 s). The NOTIFY of the app's own commit above may still arrive in the
        # window and wake both loops once: one round of looking (dispatch, claim, next due) is a handful.
        assert len(calls) <= 8, calls
    finally:
        await app.shutdown()
