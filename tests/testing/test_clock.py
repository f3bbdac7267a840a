"""The fake clock drives TTL expiry, cron ticks, retry backoff and leases, on memory and on a temp SQLite file.

Every test moves time only through the clock: nothing here sleeps, and each ``advance`` returns with what it
made due already handled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from motia import cron, http, queue, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.manager import StateManager
from motia.steps.definition import Step
from motia.testing import FakeClock, app_client, record_state_events, temp_sqlite_state
from motia.testing.clock import DEFAULT_START

#: Real-time polls far apart, so that only the clock's stops run anything while a test looks.
SLOW_POLL = DeliveryOptions(lease=30.0, poll_interval=30.0, concurrency=4)


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def clocked(url: str) -> AsyncIterator[tuple[FakeClock, StateManager]]:
    clock = FakeClock()
    manager = StateManager.from_url(url, clock=clock)
    try:
        yield clock, manager
    finally:
        await manager.aclose()


def test_time_moves_only_when_told():
    clock = FakeClock()
    assert clock() == clock.now() == DEFAULT_START.timestamp()
    assert clock.datetime() == DEFAULT_START
    clock.set(datetime(2030, 5, 1, 12, tzinfo=UTC))
    assert clock.datetime() == datetime(2030, 5, 1, 12, tzinfo=UTC)
    clock.set(100.0)
    assert clock() == 100.0


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), True, "1"])
async def test_advance_refuses_a_bad_duration_and_moves_nothing(bad: Any):
    clock = FakeClock(50.0)
    with pytest.raises(ValueError, match="advance"):
        await clock.advance(bad)
    assert clock() == 50.0


def test_set_refuses_a_naive_datetime():
    clock = FakeClock(50.0)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2030, 1, 1))
    assert clock() == 50.0


async def test_a_ttl_key_expires_and_its_expired_event_is_handled(clocked: tuple[FakeClock, StateManager]):
    clock, manager = clocked
    released: list[tuple[str, int]] = []

    async def release(input, ctx):
        released.append((input.item_id, int(clock())))

    steps = [step({"name": "release", "triggers": [state(scope="holds")]}, release)]
    async with app_client(steps, state=manager, clock=clock, delivery=SLOW_POLL):
        # Given a key held for 10 minutes (the write's created event is handled too, and ignored)
        await manager.set("holds", "h1", {"seat": 7}, ttl=600)
        await clock.advance(0)
        released.clear()
        # When 9 minutes pass, then 2 more
        await clock.advance(540)
        assert await manager.get("holds", "h1") == {"seat": 7}
        assert released == []
        await clock.advance(120)
        # Then it expired at exactly 10 minutes, and its expired event was handled before advance returned
        assert await manager.get("holds", "h1") is None
        assert released == [("h1", int(DEFAULT_START.timestamp()) + 600)]


async def test_expired_events_are_recorded_for_a_driven_store_without_an_app(clocked):
    clock, manager = clocked
    clock.drive(manager)
    async with record_state_events(manager) as events:
        await manager.set("cache", "k", 1, ttl=5)
        await clock.advance(4)
        await events.collect()
        assert [e.event_type for e in events.events] == ["created"]
        await clock.advance(1)
        await events.collect()
        assert [e.event_type for e in events.events] == ["created", "expired"]


async def test_the_due_cron_ticks_run_once_each_in_order(clocked):
    clock, manager = clocked
    ticks: list[datetime] = []

    async def report(input, ctx):
        ticks.append(input.scheduled_at)
        await ctx.state.set("reports", input.scheduled_at.isoformat(), {"at": clock()})

    steps = [step({"name": "report", "triggers": [cron("*/15 * * * *")]}, report)]
    async with app_client(steps, state=manager, clock=clock, cron=True, delivery=SLOW_POLL):
        await clock.advance(0)
        assert ticks == []  # the first tick is after the start
        await clock.advance(3600)
        start = DEFAULT_START.timestamp()
        assert [t.timestamp() - start for t in ticks] == [900, 1800, 2700, 3600]
        # each ran with the clock at its tick
        reports = await manager.items("reports")
        assert sorted(entry.value["at"] - start for entry in reports) == [900, 1800, 2700, 3600]
        await clock.advance(899)
        assert len(ticks) == 4


async def test_a_jump_of_the_clock_runs_the_ticks_in_between_once(clocked):
    clock, manager = clocked
    ticks: list[datetime] = []

    async def report(input, ctx):
        ticks.append(input.scheduled_at)

    steps = [step({"name": "report", "triggers": [cron("0 * * * *")]}, report)]
    async with app_client(steps, state=manager, clock=clock, cron=True, delivery=SLOW_POLL):
        clock.set(DEFAULT_START.timestamp() + 3 * 3600 + 10)
        assert ticks == []  # set() runs nothing
        await clock.advance(0)
        assert [t.hour for t in ticks] == [1, 2, 3]
        await clock.advance(0)
        assert len(ticks) == 3


async def test_cron_stays_off_unless_asked(clocked):
    clock, manager = clocked
    ran: list[object] = []
    steps = [step({"name": "report", "triggers": [cron("* * * * *")]}, lambda input: ran.append(input))]
    async with app_client(steps, state=manager, clock=clock, delivery=SLOW_POLL):
        await clock.advance(600)
    assert ran == []


async def test_retry_backoff_is_released_when_due(clocked):
    clock, manager = clocked
    attempts: list[tuple[int, float]] = []

    async def flaky(input, ctx):
        attempts.append((ctx.trigger.attempt, clock() - DEFAULT_START.timestamp()))
        if len(attempts) < 3:
            raise RuntimeError("the mailer is down")

    steps = [
        step({"name": "send", "triggers": [http("POST", "/send")], "enqueues": ["mail"]}, _enqueue_mail),
        step({"name": "mail", "triggers": [queue("mail", config={"max_retries": 5, "backoff": 10})]}, flaky),
    ]
    async with app_client(steps, state=manager, clock=clock, delivery=SLOW_POLL) as client:
        assert (await client.post("/send", json={})).status_code == 200
        await clock.advance(0)
        assert attempts == [(1, 0)]
        # the first retry waits 10 s (due at 10), the second 20 s more (due at 30): 25 s release only the first
        await clock.advance(25)
        assert attempts == [(1, 0), (2, 10)]
        await clock.advance(5)
        assert attempts == [(1, 0), (2, 10), (3, 30)]
        assert await manager.backend.pending("mail") == 0
        await clock.advance(3600)
        assert len(attempts) == 3


async def test_a_rate_limit_opens_its_windows_on_the_fake_clock(clocked):
    # Given a step limited to 2 starts a minute, driven by the fake clock (its windows on the fake time)
    clock, manager = clocked
    started: list[tuple[int, float]] = []

    async def send(request, ctx):
        for n in range(5):
            await ctx.enqueue({"topic": "mail", "data": {"n": n}})
        return {"status": 200, "body": {}}

    async def mail(input, ctx):
        started.append((ctx.trigger.attempt, clock() - DEFAULT_START.timestamp()))

    steps = [
        step({"name": "send", "triggers": [http("POST", "/send")], "enqueues": ["mail"]}, send),
        step({"name": "mail", "triggers": [queue("mail", config={"rateLimit": {"limit": 2, "period": 60}})]}, mail),
    ]
    async with app_client(steps, state=manager, clock=clock, delivery=SLOW_POLL) as client:
        assert (await client.post("/send", json={})).status_code == 200
        # When no time passes, 2 start; the others wait for the next window, not as attempts
        await clock.advance(0)
        assert started == [(1, 0), (1, 0)]
        assert await manager.backend.pending("mail") == 3
        # Then each minute opens a window for 2 more
        await clock.advance(59)
        assert len(started) == 2
        await clock.advance(1.01)  # the window opens at 60 s; postponed messages are due a millisecond after
        assert [t for _, t in started[2:]] == [pytest.approx(60, abs=0.01)] * 2
        await clock.advance(60)
        assert len(started) == 5 and {attempt for attempt, _ in started} == {1}
        assert await manager.backend.pending("mail") == 0


async def _enqueue_mail(request, ctx):
    await ctx.enqueue({"topic": "mail", "data": {"to": "a@example.com"}})
    return {"status": 200, "body": {}}


async def test_a_lease_expires_on_the_clock(clocked):
    clock, manager = clocked
    backend = manager.backend
    assert await backend.acquire_lease("job", "a", ttl=30)
    assert not await backend.acquire_lease("job", "b", ttl=30)
    await clock.advance(29)
    assert not await backend.acquire_lease("job", "b", ttl=30)
    await clock.advance(1)
    assert await backend.acquire_lease("job", "b", ttl=30)


async def test_an_app_driven_by_hand(clocked):
    clock, manager = clocked
    seen: list[int] = []
    steps: list[Step] = [step({"name": "watch", "triggers": [state(scope="s")]}, lambda i: seen.append(i.version))]
    app = MotiaApp(steps, state=manager, cron=False, sweep_interval=0, delivery=SLOW_POLL)
    with pytest.raises(RuntimeError, match="started"):
        clock.drive(app)
    await app.startup()
    try:
        clock.drive(app)
        await manager.set("s", "k", 1)
        await manager.set("s", "k", 2)
        await clock.advance(0)
        assert seen == [1, 2]
        clock.release(app)
        assert app.delivery is not None and app.delivery.retry_listeners == []
    finally:
        await app.shutdown()


async def test_two_instances_on_one_store_run_each_tick_once(clocked):
    clock, manager = clocked
    runs: list[tuple[str, datetime]] = []

    def job(name: str) -> Step:
        async def report(input, ctx):
            runs.append((name, input.scheduled_at))

        return step({"name": "report", "triggers": [cron("*/15 * * * *")]}, report)

    # Given two instances of one app sharing the store, both driven by the clock
    async with (
        app_client([job("a")], state=manager, clock=clock, cron=True, delivery=SLOW_POLL),
        app_client([job("b")], state=manager, clock=clock, cron=True, delivery=SLOW_POLL),
    ):
        await clock.advance(3600)
    # Then each tick ran once, in whichever instance claimed it first
    assert sorted(tick.minute for _, tick in runs) == [0, 15, 30, 45]


async def test_a_temp_sqlite_state_runs_on_the_clock_and_is_removed_after():
    clock = FakeClock()
    async with temp_sqlite_state(clock=clock) as manager:
        assert manager.url.startswith("sqlite:///")
        path = Path(manager.url.removeprefix("sqlite:///"))
        await manager.set("s", "k", 1, ttl=10)
        clock.set(clock() + 10)
        assert await manager.get("s", "k") is None
        assert path.exists()
    assert not path.parent.exists()


async def test_work_one_app_makes_for_another_is_done_at_the_same_stop(clocked):
    clock, manager = clocked
    seen: list[tuple[str, float]] = []

    async def tick(input, ctx):
        await ctx.state.set("ticks", "last", input.scheduled_at.isoformat())

    async def watch(input, ctx):
        seen.append((input.item_id, clock() - DEFAULT_START.timestamp()))

    # Given the first app watches a scope that only the second app's cron job writes
    watcher = [step({"name": "watch", "triggers": [state(scope="ticks")]}, watch)]
    ticker = [step({"name": "tick", "triggers": [cron("0 * * * *")]}, tick)]
    async with (
        app_client(watcher, state=manager, clock=clock, delivery=SLOW_POLL),
        app_client(ticker, state=manager, clock=clock, cron=True, delivery=SLOW_POLL),
    ):
        # When the tick comes due, within a longer advance
        await clock.advance(5400)
        # Then the first app handled the second's write at the tick, not at some later stop
        assert seen == [("last", 3600)]


async def test_a_queue_delay_comes_due_on_the_clock(clocked):
    clock, manager = clocked
    handled: list[float] = []

    async def later(data, ctx):
        handled.append(clock() - DEFAULT_START.timestamp())

    steps = [
        step({"name": "send", "triggers": [http("POST", "/send")], "enqueues": ["mail"]}, _enqueue_mail),
        step({"name": "later", "triggers": [queue("mail", config={"delay_seconds": 30})]}, later),
    ]
    async with app_client(steps, state=manager, clock=clock, delivery=SLOW_POLL) as client:
        await client.post("/send", json={})
        await clock.advance(29)
        assert handled == []
        await clock.advance(100)
        assert handled == [30]
