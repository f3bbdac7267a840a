"""On PostgreSQL an app's workers are woken by other processes' commits (``LISTEN``/``NOTIFY``), not by their
poll: with a poll interval far longer than the test, a message enqueued or a state change made through another
connection to the store is handled within seconds."""

from __future__ import annotations

import asyncio
import itertools
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
