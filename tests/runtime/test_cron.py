from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from motia import ConfigError
from motia.runtime.cron import CronJob, CronScheduler, next_fire, validate_expression


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("previous", "expression", "expected"),
    [
        # 5 fields: minute hour day month weekday
        (utc(2024, 1, 1, 0, 0, 0), "0 * * * *", utc(2024, 1, 1, 1, 0, 0)),
        (utc(2024, 1, 1, 0, 30, 0), "0 * * * *", utc(2024, 1, 1, 1, 0, 0)),
        (utc(2024, 1, 1, 0, 59, 59), "0 * * * *", utc(2024, 1, 1, 1, 0, 0)),
        (utc(2024, 1, 1, 1, 0, 0), "0 * * * *", utc(2024, 1, 1, 2, 0, 0)),  # strictly after
        (utc(2024, 1, 1, 0, 0, 30), "* * * * *", utc(2024, 1, 1, 0, 1, 0)),
        (utc(2024, 1, 1, 0, 7, 0), "*/15 * * * *", utc(2024, 1, 1, 0, 15, 0)),
        (utc(2024, 1, 1, 23, 59, 0), "0 0 * * *", utc(2024, 1, 2, 0, 0, 0)),
        (utc(2024, 1, 31, 12, 0, 0), "0 0 1 * *", utc(2024, 2, 1, 0, 0, 0)),
        (utc(2024, 2, 28, 0, 0, 0), "0 0 29 2 *", utc(2024, 2, 29, 0, 0, 0)),  # leap day
        (utc(2024, 1, 1, 0, 0, 0), "0 9 * * 1-5", utc(2024, 1, 1, 9, 0, 0)),  # Monday
        (utc(2024, 1, 5, 10, 0, 0), "0 9 * * 1-5", utc(2024, 1, 8, 9, 0, 0)),  # Friday -> Monday
        (utc(2024, 12, 31, 23, 59, 59), "0 0 1 1 *", utc(2025, 1, 1, 0, 0, 0)),
        # 6 fields: second first
        (utc(2024, 1, 1, 0, 0, 0), "* * * * * *", utc(2024, 1, 1, 0, 0, 1)),
        (utc(2024, 1, 1, 0, 0, 0), "*/5 * * * * *", utc(2024, 1, 1, 0, 0, 5)),
        (utc(2024, 1, 1, 0, 0, 7), "*/5 * * * * *", utc(2024, 1, 1, 0, 0, 10)),
        (utc(2024, 1, 1, 0, 0, 0), "30 * * * * *", utc(2024, 1, 1, 0, 0, 30)),
        (utc(2024, 1, 1, 0, 0, 30), "30 * * * * *", utc(2024, 1, 1, 0, 1, 30)),
        (utc(2024, 1, 1, 0, 0, 0), "0 0 * * * *", utc(2024, 1, 1, 1, 0, 0)),
        (utc(2024, 1, 1, 0, 0, 0, 500000), "* * * * * *", utc(2024, 1, 1, 0, 0, 1)),
        # aliases
        (utc(2024, 1, 1, 0, 10, 0), "@hourly", utc(2024, 1, 1, 1, 0, 0)),
        (utc(2024, 1, 1, 0, 10, 0), "@daily", utc(2024, 1, 2, 0, 0, 0)),
    ],
)
def test_next_fire(previous, expression, expected):
    got = next_fire(previous, expression)
    assert got == expected
    assert got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_next_fire_treats_naive_as_utc_and_converts_other_zones():
    assert next_fire(datetime(2024, 1, 1, 0, 30), "0 * * * *") == utc(2024, 1, 1, 1, 0)
    plus_two = timezone(timedelta(hours=2))
    # 02:30 at +02:00 is 00:30 UTC: the next UTC midnight is the following day.
    assert next_fire(datetime(2024, 1, 1, 2, 30, tzinfo=plus_two), "0 0 * * *") == utc(2024, 1, 2, 0, 0)


@pytest.mark.parametrize(
    "expression",
    ["", "* * * *", "0 0 * * * * 2030", "61 * * * *", "* 25 * * *", "every hour", "@sometimes", "*/0 * * * *"],
)
def test_invalid_expressions(expression):
    with pytest.raises(ConfigError, match="invalid cron expression"):
        validate_expression(expression)


def test_non_string_expression():
    with pytest.raises(ConfigError, match="must be a string"):
        validate_expression(5)  # type: ignore[arg-type]


class FakeClock:
    """Wall time that only moves when the scheduler sleeps."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


async def wait_until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0)


async def test_scheduler_runs_at_each_tick_starting_with_the_next_one():
    clock = FakeClock(utc(2024, 1, 1, 0, 0, 0, 250000))
    ticks: list[datetime] = []

    async def run(at: datetime) -> None:
        ticks.append(at)

    scheduler = CronScheduler([CronJob("job", "* * * * * *", run)], now=clock, sleep=clock.sleep)
    scheduler.start()
    await wait_until(lambda: len(ticks) >= 3)
    await scheduler.stop()
    assert ticks[:3] == [utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 2), utc(2024, 1, 1, 0, 0, 3)]


async def test_scheduler_never_overlaps_runs_of_one_job(caplog):
    clock = FakeClock(utc(2024, 1, 1))
    release = asyncio.Event()
    started: list[datetime] = []

    async def slow(at: datetime) -> None:
        started.append(at)
        await release.wait()

    scheduler = CronScheduler([CronJob("slow", "* * * * * *", slow)], now=clock, sleep=clock.sleep)
    scheduler.start()
    # Given a run that is still going, when five more ticks pass, then no second run starts.
    await wait_until(lambda: clock.now >= utc(2024, 1, 1, 0, 0, 6))
    assert started == [utc(2024, 1, 1, 0, 0, 1)]
    assert "skipped, the previous run is still going" in caplog.text
    release.set()
    await wait_until(lambda: len(started) >= 2)
    await scheduler.stop()
    assert started[1] > utc(2024, 1, 1, 0, 0, 6)


async def test_stop_waits_for_running_runs_then_cancels_after_timeout():
    clock = FakeClock(utc(2024, 1, 1))
    finished: list[str] = []
    gate = asyncio.Event()

    async def finishes(at: datetime) -> None:
        await gate.wait()
        finished.append("ok")

    async def hangs(at: datetime) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            finished.append("cancelled")
            raise

    jobs = [CronJob("finishes", "* * * * * *", finishes), CronJob("hangs", "* * * * * *", hangs)]
    scheduler = CronScheduler(jobs, now=clock, sleep=clock.sleep)
    scheduler.start()
    await wait_until(lambda: len(scheduler._runs) == 2)
    asyncio.get_running_loop().call_soon(gate.set)
    await scheduler.stop(timeout=0.2)
    assert sorted(finished) == ["cancelled", "ok"]
