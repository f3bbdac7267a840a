from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from motia import ConfigError, cron, step
from motia.exceptions import StateTimeout
from motia.runtime.app import MotiaApp
from motia.runtime.cron import CLAIM_HOLD, CronJob, CronScheduler, next_fire, validate_expression
from motia.state.backends.memory import MemoryBackend
from motia.steps.schedule import ScheduleExhausted


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc, arg-type]


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
        # 7 fields: second first, year last (motia-py 1.0)
        (utc(2024, 1, 1, 0, 0, 0), "0 30 9 * * * 2030", utc(2030, 1, 1, 9, 30, 0)),
        (utc(2024, 1, 1, 0, 0, 0), "*/5 * * * * * *", utc(2024, 1, 1, 0, 0, 5)),
        (utc(2024, 1, 1, 0, 0, 0), "0 0 12 29 2 * 2025-2030", utc(2028, 2, 29, 12, 0, 0)),  # next leap day in range
        (utc(2030, 12, 31, 22, 30, 0), "0 0 * * * * 2030,2032", utc(2030, 12, 31, 23, 0, 0)),
        (utc(2030, 12, 31, 23, 0, 0), "0 0 * * * * 2030,2032", utc(2032, 1, 1, 0, 0, 0)),  # skips 2031
        (utc(2024, 1, 1, 0, 0, 0), "15 10 8 * * 1-5 2024/2", utc(2024, 1, 1, 8, 10, 15)),
        (utc(2024, 1, 1, 0, 0, 0), "0 0 0 1 1 * 2099", utc(2099, 1, 1, 0, 0, 0)),  # decades ahead
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
    [
        "",
        "* * * *",
        "0 0 * * * * 2030 1",  # 8 fields
        "61 * * * *",
        "* 25 * * *",
        "every hour",
        "@sometimes",
        "*/0 * * * *",
        "0 0 0 1 1 * 2100",  # year out of range (1970-2099)
        "0 0 0 1 1 * 20x0",
        "0 0 0 30 2 * 2027",  # never: no 30 February
    ],
)
def test_invalid_expressions(expression):
    with pytest.raises(ConfigError, match="invalid cron expression"):
        validate_expression(expression)


def test_seven_fields_whose_years_are_over_are_valid_but_exhausted():
    # Given an expression of a past year: it is valid (it once fired) ...
    assert validate_expression("0 0 0 1 1 * 2020") == "0 0 0 1 1 * 2020"
    assert next_fire(utc(2019, 6, 1), "0 0 0 1 1 * 2020") == utc(2020, 1, 1)
    # ... but after its last tick there is no next one.
    with pytest.raises(ScheduleExhausted, match="no tick after"):
        next_fire(utc(2020, 1, 1), "0 0 0 1 1 * 2020")


async def test_scheduler_stops_scheduling_an_exhausted_job_and_keeps_the_others(caplog):
    # Given a job whose last year is past and one that fires every second
    clock = FakeClock(utc(2024, 1, 1))
    ticks: list[str] = []

    async def run_old(at: datetime) -> None:
        ticks.append("old")

    async def run_now(at: datetime) -> None:
        ticks.append("now")

    jobs = [CronJob("old", "0 0 0 1 1 * 2020", run_old), CronJob("now", "* * * * * *", run_now)]
    scheduler = CronScheduler(jobs, now=clock, sleep=clock.sleep)
    caplog.set_level("INFO", logger="motia.cron")
    scheduler.start()
    # When ticks pass, then the live job runs, the exhausted one never, and that is logged, not raised.
    await wait_until(lambda: len(ticks) >= 2)
    await scheduler.stop()
    assert set(ticks) == {"now"}
    assert "old: 0 0 0 1 1 * 2020 has no tick left" in caplog.text


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


# --------------------------------------------------------------------------------------------------------------
# Tick claims: instances sharing a store run each tick once
# --------------------------------------------------------------------------------------------------------------


async def test_scheduler_runs_only_the_ticks_it_claims():
    clock = FakeClock(utc(2024, 1, 1))
    asked: list[tuple[str, float, float]] = []
    ran: list[datetime] = []

    async def claim(job: str, tick: float, *, hold: float) -> bool:
        asked.append((job, tick, hold))
        return int(tick) % 2 == 0  # this instance wins the even seconds

    async def run(at: datetime) -> None:
        ran.append(at)

    scheduler = CronScheduler(
        [CronJob("job", "* * * * * *", run, key="cron:job:0")], now=clock, sleep=clock.sleep, claim=claim
    )
    scheduler.start()
    await wait_until(lambda: len(ran) >= 3)
    await scheduler.stop()
    # Each tick was claimed under the job's key at its scheduled time; only the won ones ran
    assert asked[:6] == [("cron:job:0", utc(2024, 1, 1, 0, 0, s).timestamp(), CLAIM_HOLD) for s in range(1, 7)]
    assert ran[:3] == [utc(2024, 1, 1, 0, 0, 2), utc(2024, 1, 1, 0, 0, 4), utc(2024, 1, 1, 0, 0, 6)]


class SharedClock(FakeClock):
    """Wall time for several schedulers: sleepers wait for the test to move it (a ``FakeClock`` would
    move it once per sleeper, so two schedulers would drift onto different ticks)."""

    async def sleep(self, seconds: float) -> None:
        deadline = self.now + timedelta(seconds=seconds)
        while self.now < deadline:
            await asyncio.sleep(0)

    async def advance_until(self, predicate, *, step: float = 0.1, limit: float = 60.0) -> None:
        start = self.now
        while not predicate():
            assert self.now - start < timedelta(seconds=limit), "condition not reached in fake time"
            self.now += timedelta(seconds=step)
            for _ in range(5):  # let every scheduler and run task see this instant
                await asyncio.sleep(0)


async def test_two_schedulers_on_one_store_run_each_tick_once():
    # Given two schedulers (two instances of an app) claiming ticks in one shared store
    clock = SharedClock(utc(2024, 1, 1))
    store = MemoryBackend(clock=lambda: clock.now.timestamp())
    attempts: dict[str, list[datetime]] = {"a": [], "b": []}
    ran: list[tuple[str, datetime]] = []

    def instance(name: str) -> CronScheduler:
        async def claim(job: str, tick: float, *, hold: float) -> bool:
            attempts[name].append(datetime.fromtimestamp(tick, UTC))
            return await store.claim_tick(job, tick, hold=hold)

        async def run(at: datetime) -> None:
            ran.append((name, at))

        job = CronJob(f"job-{name}", "* * * * * *", run, key="cron:job:0")
        return CronScheduler([job], now=clock, sleep=clock.sleep, claim=claim)

    schedulers = [instance("a"), instance("b")]
    for scheduler in schedulers:
        scheduler.start()
    # When both have tried ten ticks
    await clock.advance_until(lambda: len(set(attempts["a"]) & set(attempts["b"])) >= 10)
    for scheduler in schedulers:
        await scheduler.stop()
    # Then each tick both tried ran exactly once, on one instance or the other
    contested = set(attempts["a"]) & set(attempts["b"])
    runs_of = {tick: [name for name, at in ran if at == tick] for tick in contested}
    assert all(len(names) == 1 for names in runs_of.values()), runs_of
    assert len({at for _, at in ran}) == len(ran)  # no tick ran twice, contested or not


async def test_a_tick_that_cannot_be_claimed_is_skipped_and_the_schedule_goes_on(caplog):
    clock = FakeClock(utc(2024, 1, 1))
    ran: list[datetime] = []

    async def claim(job: str, tick: float, *, hold: float) -> bool:
        if tick == utc(2024, 1, 1, 0, 0, 1).timestamp():
            raise StateTimeout("the state file /x/state.db stayed locked for more than 10 s")
        return True

    async def run(at: datetime) -> None:
        ran.append(at)

    scheduler = CronScheduler([CronJob("job", "* * * * * *", run)], now=clock, sleep=clock.sleep, claim=claim)
    scheduler.start()
    await wait_until(lambda: len(ran) >= 2)
    await scheduler.stop()
    assert ran[:2] == [utc(2024, 1, 1, 0, 0, 2), utc(2024, 1, 1, 0, 0, 3)]
    assert "cron job: tick 2024-01-01T00:00:01+00:00 skipped, it could not be claimed" in caplog.text
    assert "stayed locked" in caplog.text  # the cause, with its traceback


async def test_app_claims_each_tick_under_the_step_name_and_trigger_index():
    # Given an app whose step has two per-second cron triggers, on a store
    seen: list[tuple[str, datetime]] = []
    both = asyncio.Event()

    async def handler(input, ctx):
        seen.append((input.expression, input.scheduled_at))
        if {expression for expression, _ in seen} == {"* * * * * *", "*/1 * * * * *"}:
            both.set()

    ticker = step({"name": "ticker", "triggers": [cron("* * * * * *"), cron("*/1 * * * * *")]}, handler)
    app = MotiaApp([ticker], state="memory://", delivery=False)
    await app.startup()
    try:
        # When each trigger has run once
        await asyncio.wait_for(both.wait(), timeout=10)
        # Then the ticks it ran are claimed as cron:<step>:<trigger index>, and another claim loses
        for expression, at in list(seen):
            index = 0 if expression == "* * * * * *" else 1
            assert not await app.state.backend.claim_tick(f"cron:ticker:{index}", at.timestamp(), hold=60)
    finally:
        await app.shutdown()
