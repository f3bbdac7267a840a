"""``DeliveryWorker.run_ready`` and its hooks for a fake clock: running what is ready now, learning when retries
come due, leaving a delivery unsettled as after a crash."""

from __future__ import annotations

import asyncio
import logging

import pytest

from motia import queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.backends.types import Delivery
from motia.state.manager import StateManager

SLOW = DeliveryOptions(lease=30.0, poll_interval=30.0, concurrency=4)


async def _started(handler) -> tuple[MotiaApp, StateManager, list[float]]:
    now = [1000.0]
    state = StateManager.from_url("memory://", clock=lambda: now[0])
    app = MotiaApp(
        [step({"name": "work", "triggers": [queue("jobs")]}, handler)],
        state=state,
        cron=False,
        sweep_interval=0,
        delivery=SLOW,
    )
    await app.startup()
    return app, state, now


async def test_run_ready_runs_what_is_due_and_leaves_backoffs_waiting(caplog: pytest.LogCaptureFixture):
    calls: list[int] = []

    async def handler(data, ctx):
        calls.append(ctx.trigger.attempt)
        raise RuntimeError("down")

    app, state, now = await _started(handler)
    try:
        worker = app.delivery
        assert worker is not None
        told: list[tuple[str, float]] = []

        def broken(delivery: Delivery, delay: float) -> None:
            raise ValueError("a listener that fails")

        worker.retry_listeners += [lambda delivery, delay: told.append((delivery.step, delay)), broken]
        await app.queues.send({"topic": "jobs", "data": {"n": 1}}, sender=None, message_id="m1", trace_id=None)
        with caplog.at_level(logging.ERROR, logger="motia.runtime"):
            assert await worker.run_ready() == 1
        # the failed attempt is put back for 1 s; a failing listener is logged, the others still told
        assert calls == [1]
        assert told == [("work", 1.0)]
        assert "a retry listener failed" in caplog.text
        assert await worker.run_ready() == 0  # not due: the store's clock has not moved
        now[0] += 1.0
        assert await worker.run_ready() == 1
        assert calls == [1, 2]
    finally:
        await app.shutdown()
        await state.aclose()


async def test_run_ready_gives_up_after_its_timeout():
    release = asyncio.Event()

    async def handler(data, ctx):
        await release.wait()

    app, state, _ = await _started(handler)
    try:
        assert app.delivery is not None
        await app.queues.send({"topic": "jobs", "data": {"n": 1}}, sender=None, message_id="m1", trace_id=None)
        with pytest.raises(TimeoutError):
            await app.delivery.run_ready(timeout=0.2)
        release.set()
        assert await app.delivery.run_ready() == 0  # the running one finished; nothing else was ready
        assert await state.backend.pending("work") == 0
    finally:
        await app.shutdown()
        await state.aclose()
