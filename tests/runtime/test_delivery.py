"""The delivery worker: bounded concurrency, lease renewal, recovery of a dead owner's work, and several
workers sharing one store (a SQLite file, a PostgreSQL schema) without double-processing."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import motia
from motia import queue, state, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.backends.base import NewDelivery
from motia.state.manager import StateManager

_schemas = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several apps share: one SQLite file, or a fresh schema on the session's PostgreSQL cluster."""
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=dw{next(_schemas)}"
    return f"sqlite:///{tmp_path / 'state.db'}"


async def started(steps: list[Any], url: str, options: DeliveryOptions) -> MotiaApp:
    app = MotiaApp(steps, state=url, cron=False, delivery=options, shutdown_timeout=2.0)
    await app.startup()
    return app


async def test_two_workers_on_one_store_share_the_work(shared_url: str) -> None:
    # Given two apps (as two processes would) on one store, each running two handlers at a time
    url = shared_url
    handled: Counter[int] = Counter()
    by_worker: Counter[str] = Counter()

    async def work(input, ctx):
        await asyncio.sleep(0.005)  # the work itself
        handled[input["n"]] += 1
        by_worker[owner_of[id(ctx.state)]] += 1

    steps = [step({"name": "work", "triggers": [queue("jobs")]}, work)]
    options = DeliveryOptions(lease=5, poll_interval=0.01, concurrency=2)
    first = await started(steps, url, options)
    second = await started(steps, url, options)
    owner_of = {id(first.state): "first", id(second.state): "second"}
    try:
        # When 60 messages are enqueued through one of them
        for n in range(60):
            await first.queues.send({"topic": "jobs", "data": {"n": n}}, sender=None, message_id=f"m{n}", trace_id=None)
        await first.drain(20)
        await second.drain(20)
    finally:
        await first.shutdown()
        await second.shutdown()
    # Then every message was handled exactly once, and both workers took part
    assert sorted(handled) == list(range(60)) and set(handled.values()) == {1}
    assert by_worker["first"] > 0 and by_worker["second"] > 0, by_worker


async def test_a_long_handler_keeps_its_lease(shared_url: str) -> None:
    # Given leases of 0.3 s, a handler that works for 1 s, and a second worker waiting for expired leases
    url = shared_url
    runs: list[int] = []

    async def long_job(input, ctx):
        runs.append(ctx.trigger.attempt)
        await asyncio.sleep(1.0)  # the work itself, three leases long

    steps = [step({"name": "long", "triggers": [queue("jobs")]}, long_job)]
    options = DeliveryOptions(lease=0.3, poll_interval=0.02, concurrency=4)
    first = await started(steps, url, options)
    second = await started(steps, url, options)
    try:
        await motia.enqueue({"topic": "jobs", "data": 1})
        await first.drain(10)
        await second.drain(10)
    finally:
        await first.shutdown()
        await second.shutdown()
    # Then it ran once: renewals kept the other worker off it
    assert runs == [1]


async def test_work_of_a_dead_owner_is_picked_up_when_its_lease_expires(shared_url: str) -> None:
    # Given a delivery leased to a process that died (it will never settle it)
    url = shared_url
    done = asyncio.Event()
    attempts: list[int] = []

    async def job(input, ctx):
        attempts.append(ctx.trigger.attempt)
        done.set()

    dead = StateManager.from_url(url)
    await dead.backend.enqueue([NewDelivery("m1>job", "job", "queue", b'{"topic":"jobs","data":1,"trace_id":null}')])
    assert [d.id for d in await dead.backend.claim(["job"], owner="dead-process", limit=1, lease=0.3)] == ["m1>job"]
    await dead.aclose()
    # When an app starts on the store, its worker's poll finds the delivery once the lease runs out
    app = await started(
        [step({"name": "job", "triggers": [queue("jobs")]}, job)], url, DeliveryOptions(poll_interval=0.02)
    )
    try:
        await asyncio.wait_for(done.wait(), 10)
        await app.drain()
    finally:
        await app.shutdown()
    # Then it ran here, as the second attempt
    assert attempts == [2]


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    # Given a worker running at most 3 handlers at once, and handlers that wait to be released
    running = 0
    peak = 0
    release = asyncio.Event()
    three_running = asyncio.Event()

    async def job(input, ctx):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 3:
            three_running.set()
        await release.wait()
        running -= 1

    app = await started(
        [step({"name": "job", "triggers": [state(scope="jobs")]}, job)],
        f"sqlite:///{tmp_path / 'state.db'}",
        DeliveryOptions(poll_interval=0.02, concurrency=3),
    )
    try:
        for n in range(10):
            await app.state.set("jobs", f"k{n}", n)
        await asyncio.wait_for(three_running.wait(), 10)
        release.set()
        await app.drain()
    finally:
        await app.shutdown()
    assert peak == 3


async def test_handlers_that_return_together_are_completed_in_one_store_call(tmp_path: Path) -> None:
    # Given a worker running up to 8 handlers at once, and 8 handlers held until all have started
    release = asyncio.Event()
    started_count = 0

    async def job(input, ctx):
        nonlocal started_count
        started_count += 1
        if started_count == 8:
            release.set()
        await release.wait()

    app = await started(
        [step({"name": "job", "triggers": [state(scope="jobs")]}, job)],
        f"sqlite:///{tmp_path / 'state.db'}",
        DeliveryOptions(poll_interval=0.02, concurrency=8),
    )
    backend = app.state.backend
    calls: list[list[str]] = []
    complete_many = backend.complete_many

    async def counting(ids: Any, *, owner: str) -> set[str]:
        calls.append(list(ids))
        return await complete_many(ids, owner=owner)

    backend.complete_many = counting  # type: ignore[method-assign,assignment]
    complete_and_claim = backend.complete_and_claim

    async def counting_with_claim(ids: Any, **claim: Any) -> tuple[set[str], list[Any]]:
        calls.append(list(ids))  # the worker completes them with its next claim
        return await complete_and_claim(ids, **claim)

    backend.complete_and_claim = counting_with_claim  # type: ignore[method-assign,assignment]
    try:
        # When 8 writes trigger it and the handlers all return in the same moment
        for n in range(8):
            await app.state.set("jobs", f"k{n}", n)
        await app.drain()
        left = await backend.pending()
    finally:
        await app.shutdown()
    # Then their 8 deliveries were completed by one call, and none is left
    assert sorted(len(ids) for ids in calls) == [8], calls
    assert left == 0


async def test_a_returned_handlers_completion_rides_the_next_claim(tmp_path: Path) -> None:
    # Given a worker running one handler at a time, and the store calls it makes recorded
    seen: list[int] = []
    both_written = asyncio.Event()

    async def job(input, ctx):
        await both_written.wait()
        seen.append(input.new_value)

    app = await started(
        [step({"name": "job", "triggers": [state(scope="jobs")]}, job)],
        f"sqlite:///{tmp_path / 'state.db'}",
        DeliveryOptions(poll_interval=0.02, concurrency=1),
    )
    backend = app.state.backend
    alone: list[list[str]] = []
    combined: list[tuple[list[str], list[str]]] = []
    complete_many, complete_and_claim = backend.complete_many, backend.complete_and_claim

    async def recorded_alone(ids: Any, *, owner: str) -> set[str]:
        alone.append(list(ids))
        return await complete_many(ids, owner=owner)

    async def recorded_with_claim(ids: Any, **claim: Any) -> tuple[set[str], list[Any]]:
        done, claimed = await complete_and_claim(ids, **claim)
        combined.append((sorted(done), [d.id for d in claimed]))
        return done, claimed

    backend.complete_many = recorded_alone  # type: ignore[method-assign,assignment]
    backend.complete_and_claim = recorded_with_claim  # type: ignore[method-assign,assignment]
    try:
        # When one key changes twice (the second event waits for the first's completion: per-key order)
        await app.state.set("jobs", "a", 1)
        await app.state.set("jobs", "a", 2)
        both_written.set()
        await app.drain()
        left = await backend.pending()
    finally:
        await app.shutdown()
    # Then the first delivery's completion and the second's claim were one store call, and nothing was
    # completed alone
    assert seen == [1, 2] and left == 0
    (first_done, second_claimed), *_ = combined
    assert len(first_done) == 1 and len(second_claimed) == 1 and first_done != second_claimed
    assert sum(len(done) for done, _ in combined) == 2 and alone == []


async def test_a_returned_handler_frees_its_slot_while_its_completion_is_written(tmp_path: Path) -> None:
    # On a store that completes and claims in separate calls (memory here; Redis, PostgreSQL), a completion is
    # written beside the claims: a slow one never holds the next claim back. (SQLite completes with the next
    # claim, in one transaction: test_a_returned_handlers_completion_rides_the_next_claim.)
    # Given a worker running one handler at a time, whose completions are held back at a gate
    second_started = asyncio.Event()
    seen: list[int] = []

    async def job(input, ctx):
        seen.append(input.new_value)
        if len(seen) == 2:
            second_started.set()

    app = await started(
        [step({"name": "job", "triggers": [state(scope="jobs")]}, job)],
        "memory://",
        DeliveryOptions(poll_interval=0.02, concurrency=1),
    )
    backend = app.state.backend
    assert not backend.completes_with_claim
    gate = asyncio.Event()
    complete_many = backend.complete_many

    async def gated(ids: Any, *, owner: str) -> set[str]:
        await gate.wait()
        return await complete_many(ids, owner=owner)

    backend.complete_many = gated  # type: ignore[method-assign,assignment]
    try:
        # When two keys change: the first handler returns, its completion waits at the gate
        await app.state.set("jobs", "a", 1)
        await app.state.set("jobs", "b", 2)
        # Then the second handler runs meanwhile (the slot was free), and both complete once released
        await asyncio.wait_for(second_started.wait(), 10)
        gate.set()
        await app.drain()
        left = await backend.pending()
    finally:
        gate.set()
        await app.shutdown()
    assert sorted(seen) == [1, 2] and left == 0


async def test_a_delivery_keeps_its_lease_while_its_completion_is_slow(tmp_path: Path) -> None:
    # Given leases of 0.3 s and a store whose completions take 1 s (three leases)
    runs: list[int] = []

    async def job(input, ctx):
        runs.append(ctx.trigger.attempt)

    app = await started(
        [step({"name": "job", "triggers": [queue("jobs")]}, job)],
        f"sqlite:///{tmp_path / 'state.db'}",
        DeliveryOptions(lease=0.3, poll_interval=0.02),
    )
    backend = app.state.backend
    complete_many = backend.complete_many

    async def slow(ids: Any, *, owner: str) -> set[str]:
        await asyncio.sleep(1.0)  # the slow store itself
        return await complete_many(ids, owner=owner)

    backend.complete_many = slow  # type: ignore[method-assign,assignment]
    complete_and_claim = backend.complete_and_claim

    async def slow_with_claim(ids: Any, **claim: Any) -> tuple[set[str], list[Any]]:
        await asyncio.sleep(1.0)  # the worker completes it with its next claim
        return await complete_and_claim(ids, **claim)

    backend.complete_and_claim = slow_with_claim  # type: ignore[method-assign,assignment]
    try:
        # When a message is handled at once, its completion taking three leases
        await motia.enqueue({"topic": "jobs", "data": 1})
        await app.drain()
        left = await backend.pending()
    finally:
        await app.shutdown()
    # Then its lease was renewed meanwhile: it ran once, and it is completed
    assert runs == [1]
    assert left == 0


async def test_a_failed_completion_is_logged_and_its_delivery_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a worker with a short lease whose first completion fails in the store
    seen: list[int] = []

    async def job(input, ctx):
        seen.append(input.new_value)

    app = await started(
        [step({"name": "job", "triggers": [state(scope="jobs")]}, job)],
        f"sqlite:///{tmp_path / 'state.db'}",
        DeliveryOptions(lease=0.3, poll_interval=0.02),
    )
    backend = app.state.backend
    complete_many = backend.complete_many
    failures = [RuntimeError("disk I/O error")]

    async def failing_once(ids: Any, *, owner: str) -> set[str]:
        if failures:
            raise failures.pop()
        return await complete_many(ids, owner=owner)

    backend.complete_many = failing_once  # type: ignore[method-assign,assignment]
    complete_and_claim = backend.complete_and_claim

    async def failing_once_with_claim(ids: Any, **claim: Any) -> tuple[set[str], list[Any]]:
        if failures:  # the worker completes it with its next claim
            raise failures.pop()
        return await complete_and_claim(ids, **claim)

    backend.complete_and_claim = failing_once_with_claim  # type: ignore[method-assign,assignment]
    try:
        # When a key changes: its handler returns, its completion fails
        await app.state.set("jobs", "a", 1)
        await app.drain()
        left = await backend.pending()
    finally:
        await app.shutdown()
    # Then the failure was logged, the delivery stayed leased and ran again once its lease expired, then completed
    assert "completing 1 delivery failed" in caplog.text and "state:" in caplog.text
    assert seen == [1, 1]
    assert left == 0


async def test_a_completion_whose_lease_had_expired_is_logged_on_the_runs_logger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a delivery leased by another owner (this worker's lease on it had expired and was taken)
    from motia.runtime.completions import Completions
    from motia.runtime.context import StepLogger

    async with StateManager.from_url(f"sqlite:///{tmp_path / 'state.db'}") as sm:
        await sm.backend.enqueue([NewDelivery("d1", "job", "queue", b"{}")])
        assert [d.id for d in await sm.backend.claim(("job",), owner="other", limit=1, lease=30)] == ["d1"]
        completions = Completions(sm.backend, owner="me")
        # When this worker completes it
        completions.add("d1", "job", StepLogger("job", "trace-1"))
        assert completions.settling == {"d1": "job"}
        assert not completions.idle
        await completions.wait()
        assert completions.idle and completions.settling == {}
        left = await sm.backend.pending()
    # Then the run's logger says so (step and trace id), and the other owner's delivery is untouched
    [record] = [r for r in caplog.records if "lease had expired" in r.getMessage()]
    assert record.motia_step == "job" and record.motia_trace_id == "trace-1"
    assert left == 1
