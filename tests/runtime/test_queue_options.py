"""Queue config with real meaning (SPEC 12, issue 14), on memory, SQLite and Redis: FIFO per
``messageGroupId`` (in order, one at a time per group, groups in parallel, order kept across retries),
``delay_seconds``, ``visibility_timeout`` (the lease), per-step ``concurrency`` and fixed backoff."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

import motia
from motia import EnqueueError, queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.queue import parse_event
from tests.polling import eventually

#: Fast polls; the leases are long, so nothing here depends on a lease expiring unless a test says so.
FAST = DeliveryOptions(lease=30.0, poll_interval=0.02, concurrency=8)

StartApp = Callable[..., Coroutine[Any, Any, MotiaApp]]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store on each backend (Redis: a fresh key prefix on the session's server; PostgreSQL: a fresh
    schema on the session's server)."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=qopt_{uuid.uuid4().hex[:12]}&timeout=5"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=qopt-{uuid.uuid4().hex[:12]}&timeout=1"


@pytest.fixture
async def start_app(queue_url: str) -> AsyncIterator[StartApp]:
    """``await start_app(steps, delivery=FAST)``: a started app on ``queue_url``, shut down after the test."""
    apps: list[MotiaApp] = []

    async def start(steps: list[Any], **options: Any) -> MotiaApp:
        options.setdefault("delivery", FAST)
        options.setdefault("shutdown_timeout", 2.0)
        app = MotiaApp(steps, state=options.pop("state", queue_url), cron=False, **options)
        apps.append(app)
        await app.startup()
        return app

    yield start
    for app in reversed(apps):
        await app.shutdown()


async def test_fifo_handles_each_group_in_order_one_at_a_time_and_groups_in_parallel(start_app: StartApp) -> None:
    # Given a FIFO step allowed 8 handlers at once, whose handler yields for a random moment
    seen: dict[str, list[int]] = defaultdict(list)
    in_flight: Counter[str] = Counter()
    most_per_group = 0
    most_overall = 0

    async def handle(input, ctx):
        nonlocal most_per_group, most_overall
        group = input["group"]
        in_flight[group] += 1
        most_per_group = max(most_per_group, in_flight[group])
        most_overall = max(most_overall, sum(in_flight.values()))
        await asyncio.sleep(random.uniform(0, 0.002))  # interleaving within a group would show
        seen[group].append(input["n"])
        in_flight[group] -= 1

    fifo = step({"name": "fifo", "triggers": [queue("jobs", config={"type": "fifo", "concurrency": 8})]}, handle)
    app = await start_app([fifo])
    # When 3 groups x 50 messages are enqueued, interleaved
    for n in range(50):
        for group in ("a", "b", "c"):
            await motia.enqueue({"topic": "jobs", "data": {"group": group, "n": n}, "messageGroupId": group})
    await app.drain(30)
    # Then each group was handled exactly in order, never two of one group at once, and groups overlapped
    assert dict(seen) == {group: list(range(50)) for group in ("a", "b", "c")}
    assert most_per_group == 1
    assert most_overall > 1


async def test_a_failing_message_holds_its_group_until_it_succeeds_or_is_dead_lettered(start_app: StartApp) -> None:
    # Given a FIFO step (2 retries, fixed 10 ms backoff) where message 1 fails twice and message 3 always fails
    calls: list[tuple[int, int]] = []
    failures = {1: 2, 3: 99}

    async def handle(input, ctx):
        calls.append((input, ctx.trigger.attempt))
        if ctx.trigger.attempt <= failures.get(input, 0):
            raise RuntimeError(f"message {input} fails")

    config = {"type": "fifo", "maxRetries": 2, "backoffType": "fixed", "backoffDelayMs": 10}
    app = await start_app([step({"name": "fifo", "triggers": [queue("jobs", config=config)]}, handle)])
    # When five messages of one group are enqueued
    for n in range(5):
        await motia.enqueue({"topic": "jobs", "data": n, "message_group_id": "g"})
    await app.drain(20)
    # Then no later message ran before an earlier one was settled: retries first, then the dead letter
    assert calls == [(0, 1), (1, 1), (1, 2), (1, 3), (2, 1), (3, 1), (3, 2), (3, 3), (4, 1)]
    [letter] = await app.state.backend.dead_letters("fifo")
    assert letter.attempts == 3 and b'"message_group_id":"g"' in letter.payload


async def test_standard_subscribers_ignore_the_group_and_fifo_needs_one(start_app: StartApp) -> None:
    # Given a FIFO and a standard subscriber of one topic; the standard one blocks on its first message
    release = asyncio.Event()
    fifo_seen: list[int] = []
    standard_seen: list[int] = []

    async def standard(input, ctx):
        standard_seen.append(input)
        if input == 0:
            await release.wait()

    async def fifo(input, ctx):
        fifo_seen.append(input)

    app = await start_app(
        [
            step({"name": "standard", "triggers": [queue("jobs")]}, standard),
            step({"name": "fifo", "triggers": [queue("jobs", config={"type": "fifo"})]}, fifo),
        ]
    )
    # When a message without a group is enqueued, it is refused and nothing is sent
    with pytest.raises(EnqueueError, match=r"FIFO subscriber \('fifo'\).*messageGroupId"):
        await motia.enqueue({"topic": "jobs", "data": -1})
    with pytest.raises(EnqueueError, match="non-empty str"):
        await motia.enqueue({"topic": "jobs", "data": -1, "messageGroupId": 7})
    assert await app.state.backend.pending() == 0
    # When two messages of one group are enqueued
    for n in range(2):
        await motia.enqueue({"topic": "jobs", "data": n, "messageGroupId": "g"})
    # Then the standard step runs the second while the first is still running: the group does not bind it
    await eventually(lambda: standard_seen == [0, 1], what="the standard step to run both messages")
    release.set()
    await app.drain(10)
    assert fifo_seen == [0, 1]


async def test_delay_seconds_holds_a_message_back(start_app: StartApp) -> None:
    # Given a step with delay_seconds=0.4 and another without delay on the same topic
    handled: dict[str, asyncio.Future[float]] = {}
    loop = asyncio.get_running_loop()
    handled["late"], handled["prompt"] = loop.create_future(), loop.create_future()

    def recorder(name: str):
        async def handle(input, ctx):
            handled[name].set_result(time.time())

        return handle

    app = await start_app(
        [
            step({"name": "late", "triggers": [queue("jobs", config={"delaySeconds": 0.4})]}, recorder("late")),
            step({"name": "prompt", "triggers": [queue("jobs")]}, recorder("prompt")),
        ]
    )
    # When one message is enqueued
    sent = time.time()
    await motia.enqueue({"topic": "jobs", "data": 1})
    # Then the delayed step handles it no sooner than 0.4 s after (the store's clock), the other at once
    late = await asyncio.wait_for(handled["late"], 10)
    prompt = await asyncio.wait_for(handled["prompt"], 10)
    assert late - sent >= 0.4
    assert prompt < late
    await app.drain(5)


@pytest.mark.parametrize("limit", [1, 3])
async def test_concurrency_bounds_the_handlers_of_one_step(start_app: StartApp, limit: int) -> None:
    # Given a step limited to `limit` handlers at once (the worker allows 8), whose handlers wait for a gate
    gate = asyncio.Event()
    running = 0
    most = 0
    done = 0

    async def handle(input, ctx):
        nonlocal running, most, done
        running += 1
        most = max(most, running)
        await gate.wait()
        await asyncio.sleep(0)
        running -= 1
        done += 1

    other_done: list[int] = []

    async def other(input, ctx):
        other_done.append(input)

    limited = step({"name": "limited", "triggers": [queue("jobs", config={"concurrency": limit})]}, handle)
    app = await start_app([limited, step({"name": "other", "triggers": [queue("other")]}, other)])
    # When 12 messages are enqueued
    for n in range(12):
        await motia.enqueue({"topic": "jobs", "data": n})
    # Then `limit` handlers start and no more; other steps still get the worker's free slots
    await eventually(lambda: running == limit, what=f"{limit} handlers running")
    await motia.enqueue({"topic": "other", "data": 1})
    await eventually(lambda: other_done == [1], what="another step to run meanwhile")
    assert running == limit
    gate.set()
    await app.drain(20)
    assert done == 12 and most == limit


async def test_fixed_backoff_waits_the_same_delay_before_each_retry(start_app: StartApp) -> None:
    # Given a step that always fails, with 3 retries at a fixed 150 ms (exponential would wait 150, 300, 600)
    attempts: list[float] = []

    async def handle(input, ctx):
        attempts.append(time.monotonic())
        raise RuntimeError("always")

    config = {"max_retries": 3, "backoff_type": "fixed", "backoff": 0.15}
    app = await start_app([step({"name": "flaky", "triggers": [queue("jobs", config=config)]}, handle)])
    await motia.enqueue({"topic": "jobs", "data": 1})
    await app.drain(20)
    # Then 4 attempts, each gap at least the delay and none near the doubled delays
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:], strict=False)]
    assert len(attempts) == 4
    assert all(0.15 <= gap < 0.45 for gap in gaps), gaps
    assert len(await app.state.backend.dead_letters("flaky")) == 1


async def test_visibility_timeout_is_the_lease_of_the_steps_deliveries(tmp_path: Path) -> None:
    # Given, on a SQLite file, a step with visibility_timeout=0.6 while the worker's lease is 30 s
    url = f"sqlite:///{tmp_path / 'state.db'}"
    started = asyncio.Event()
    release = asyncio.Event()

    async def handle(input, ctx):
        started.set()
        await release.wait()

    slow = step({"name": "slow", "triggers": [queue("jobs", config={"visibilityTimeout": 0.6})]}, handle)
    app = MotiaApp([slow], state=url, cron=False, delivery=FAST, shutdown_timeout=2.0)
    await app.startup()
    try:
        await motia.enqueue({"topic": "jobs", "data": 1})
        await asyncio.wait_for(started.wait(), 10)

        def lease_left() -> float:
            with sqlite3.connect(tmp_path / "state.db") as db:
                (until,) = db.execute("SELECT lease_until FROM motia_deliveries").fetchone()
            return float(until) - time.time()

        # Then its lease is 0.6 s, not 30, and renewals (every 0.2 s) keep it alive past the first lease
        assert 0 < lease_left() <= 0.6
        first = lease_left()
        await eventually(lambda: lease_left() > first, what="the lease to be renewed")
        assert lease_left() <= 0.6
        release.set()
        await app.drain(10)
    finally:
        await app.shutdown()


async def test_start_up_logs_the_steps_queue_config(start_app: StartApp, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="motia.runtime")
    config = {"visibilityTimeout": 12, "concurrency": 2}
    await start_app(
        [
            step({"name": "tuned", "triggers": [queue("a", config=config)]}, lambda input: None),
            step({"name": "plain", "triggers": [queue("b")]}, lambda input: None),
        ]
    )
    lines = [r.getMessage() for r in caplog.records if "(its queue config)" in r.getMessage()]
    assert lines == ["delivery: step 'tuned': lease 12 s, up to 2 at once in this process (its queue config)"]


@pytest.mark.parametrize(
    ("event", "parsed"),
    [
        ({"topic": "t", "data": 1}, ("t", 1, None)),
        ({"topic": "t", "data": 1, "messageGroupId": "g"}, ("t", 1, "g")),
        ({"topic": "t", "message_group_id": "g"}, ("t", None, "g")),
        ({"topic": "t", "messageGroupId": None}, ("t", None, None)),
    ],
)
def test_parse_event_reads_the_message_group(event: dict[str, Any], parsed: tuple[Any, ...]) -> None:
    assert parse_event(event) == parsed


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"topic": "t", "messageGroupId": "a", "message_group_id": "b"}, "both 'messageGroupId' and"),
        ({"topic": "t", "messageGroupId": ""}, "messageGroupId must be a non-empty str, got ''"),
        ({"topic": "t", "messageGroupId": ["g"]}, "messageGroupId must be a non-empty str"),
        ({"topic": "t", "groupId": "g"}, r"unknown key\(s\) 'groupId': expected topic, data, messageGroupId"),
    ],
)
def test_parse_event_refuses_a_bad_group(event: dict[str, Any], message: str) -> None:
    with pytest.raises(EnqueueError, match=message):
        parse_event(event)
