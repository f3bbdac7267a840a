"""A cron run still going blocks the job's next runs on every instance sharing the store, not just its
own (issue 11, #8): the run holds a lease on the job in the store, renewed while it runs."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from motia import cron, step
from motia.runtime.app import MotiaApp
from motia.runtime.cron import CronJob, CronScheduler
from motia.testing import memory_state

#: Longer than the job's period (1 s): each run overlaps the next tick.
RUN_SECONDS = 1.5


async def test_two_apps_on_one_store_never_run_a_long_job_at_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="motia.cron")
    runs: list[tuple[float, float, int]] = []
    both_done = asyncio.Event()

    def slow_step(instance: int):
        async def slow(input, ctx):
            start = time.monotonic()
            await asyncio.sleep(RUN_SECONDS)  # the job's work: longer than its period
            runs.append((start, time.monotonic(), instance))
            if len(runs) >= 3:
                both_done.set()

        return step({"name": "slow", "triggers": [cron("* * * * * *")]}, slow)

    # Given two instances of one app (two schedulers, each its own lease owner) on one store
    shared = memory_state()
    apps = [MotiaApp([slow_step(i)], state=shared, cron=True, delivery=False) for i in (1, 2)]
    for app in apps:
        await app.startup()
    try:
        # When a per-second job that runs 1.5 s has run three times
        async with asyncio.timeout(15):
            await both_done.wait()
    finally:
        for app in apps:
            await app.shutdown()
    await shared.aclose()

    # Then no two runs overlapped, whichever instance ran them
    ordered = sorted(runs)
    for (_, end, _), (start, _, _) in zip(ordered, ordered[1:], strict=False):
        assert start >= end, f"runs overlapped: {ordered}"
    # And the ticks that came while a run was going were skipped, some for a run on the other instance
    skipped_elsewhere = [r for r in caplog.records if "still going on another instance" in r.getMessage()]
    assert skipped_elsewhere


async def test_the_lease_is_released_when_the_run_ends_and_when_it_fails() -> None:
    store = memory_state()
    backend = store.backend
    finished = asyncio.Event()
    calls = 0

    async def run(tick) -> None:
        nonlocal calls
        calls += 1
        # While it runs, the job's lease is held: another owner cannot take it
        assert not await backend.acquire_lease("cron:job", "someone-else", ttl=5)
        if calls == 1:
            raise RuntimeError("the first run fails")
        finished.set()

    scheduler = CronScheduler([CronJob("job", "* * * * * *", run)], claim=backend.claim_tick, leases=backend)
    scheduler.start()
    try:
        async with asyncio.timeout(5):
            await finished.wait()
    finally:
        await scheduler.stop()
    # Then after a failed run and a good one, the lease is free again
    assert await backend.acquire_lease("cron:job", "someone-else", ttl=5)
    await store.aclose()
