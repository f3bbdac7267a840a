"""Keyed flow control on queue steps (issue 18), in one app on every backend: a concurrency limit per key
(never more handlers of a key at once than its limit, keys in parallel, each key in order) and a rate
limit (at most n starts per window, per key or per step; the messages over it wait, never as a failed
attempt). Across two ``motia run`` instances: ``tests/e2e/test_flow_control_e2e.py``."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

import motia
from motia import EnqueueError, queue, step
from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.runtime.flow_control import RATE_SCOPE
from motia.state.values import INTERNAL_SCOPE_PREFIX
from tests.polling import eventually
from tests.runtime.delivery_helpers import FAST, StartApp, assert_throttled

#: Room for every key's slots at once (3 keys x 3).
WIDE = DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=16)


@pytest.fixture(params=["memory", "sqlite", "redis", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=flow{uuid.uuid4().hex[:12]}&timeout=5"
    return f"{request.getfixturevalue('redis_server').url}?prefix=flow-{uuid.uuid4().hex[:12]}&timeout=1"


@pytest.fixture
async def start_app(store_url: str) -> AsyncIterator[StartApp]:
    apps: list[MotiaApp] = []

    async def start(steps: list[Any], **options: Any) -> MotiaApp:
        options.setdefault("delivery", FAST)
        options.setdefault("shutdown_timeout", 2.0)
        app = MotiaApp(steps, state=store_url, cron=False, **options)
        apps.append(app)
        await app.startup()
        return app

    yield start
    for app in reversed(apps):
        await app.shutdown()


class Overlap:
    """Records each key's handlers in flight: the most at once per key and overall, and the order of starts."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.most_overall = 0
        self.order: dict[str, list[int]] = defaultdict(list)
        self.attempts: list[int] = []
        #: Handlers wait for this once started: everything that may overlap does, whatever the timing.
        self.released = asyncio.Event()
        self.released.set()

    async def handle(self, key: str, n: int, attempt: int, pause: float) -> None:
        self.in_flight[key] += 1
        self.most[key] = max(self.most[key], self.in_flight[key])
        self.most_overall = max(self.most_overall, sum(self.in_flight.values()))
        self.order[key].append(n)
        self.attempts.append(attempt)
        await self.released.wait()
        await asyncio.sleep(pause)  # a handler that takes a moment: overlapping ones would show
        self.in_flight[key] -= 1


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_keyed_concurrency_limit_bounds_each_key_and_keys_run_in_parallel(
    start_app: StartApp, limit: int
) -> None:
    # Given a step allowed `limit` handlers per user, the worker allowed 16 at once, handlers held until
    # every message is sent
    seen = Overlap()
    seen.released.clear()

    async def handle(input: Any, ctx: Any) -> None:
        await seen.handle(input["user"]["id"], input["n"], ctx.trigger.attempt, 0.01)

    config = {"concurrency": {"key": "user.id", "limit": limit}}
    app = await start_app(
        [step({"name": "per-user", "triggers": [queue("jobs", config=config)]}, handle)], delivery=WIDE
    )
    # When 3 users x 12 messages are enqueued, interleaved
    for n in range(12):
        for user in ("u1", "u2", "u3"):
            await motia.enqueue({"topic": "jobs", "data": {"user": {"id": user}, "n": n}})
    await eventually(lambda: sum(seen.in_flight.values()) >= 3 * limit, what="every slot of every key taken")
    seen.released.set()
    await app.drain(timeout=30)
    # Then no user ever had more than `limit` handlers at once, and reached it; users ran side by side
    assert dict(seen.most) == {"u1": limit, "u2": limit, "u3": limit}
    assert seen.most_overall > limit
    # and each user's messages started in order
    for user in ("u1", "u2", "u3"):
        assert seen.order[user] == list(range(12)), user


async def test_a_message_without_its_key_is_refused_and_nothing_is_sent(start_app: StartApp) -> None:
    handled: list[Any] = []

    async def handle(input: Any, ctx: Any) -> None:
        handled.append(input)

    keyed = step(
        {"name": "keyed", "triggers": [queue("jobs", config={"concurrency": {"key": "userId", "limit": 1}})]}, handle
    )
    other = step({"name": "other", "triggers": [queue("jobs")]}, handle)
    app = await start_app([keyed, other])
    for data in ({"n": 1}, {"userId": None}, {"userId": ""}, {"userId": True}, {"userId": {"a": 1}}, "text"):
        with pytest.raises(EnqueueError, match=r"step 'keyed'.*no usable flow-control key 'userId'"):
            await motia.enqueue({"topic": "jobs", "data": data})
    # An int key is fine, as a str
    await motia.enqueue({"topic": "jobs", "data": {"userId": 7}})
    await app.drain(timeout=10)
    assert handled == [{"userId": 7}, {"userId": 7}]  # one per subscriber: the refused ones reached none


async def test_a_key_function_gives_the_key(start_app: StartApp) -> None:
    seen = Overlap()

    async def handle(input: Any, ctx: Any) -> None:
        await seen.handle(input["email"].split("@")[1], input["n"], ctx.trigger.attempt, 0.005)

    config = {"concurrency": {"key": lambda data: data["email"].split("@")[1], "limit": 1}}
    app = await start_app([step({"name": "per-domain", "triggers": [queue("mail", config=config)]}, handle)])
    for n in range(6):
        for domain in ("a.example", "b.example"):
            await motia.enqueue({"topic": "mail", "data": {"email": f"x{n}@{domain}", "n": n}})
    with pytest.raises(EnqueueError, match="key function .* raised KeyError"):
        await motia.enqueue({"topic": "mail", "data": {"n": 99}})
    await app.drain(timeout=20)
    assert dict(seen.most) == {"a.example": 1, "b.example": 1}
    assert seen.order == {"a.example": list(range(6)), "b.example": list(range(6))}


async def test_a_rate_limit_spreads_starts_over_windows_without_counting_attempts(start_app: StartApp) -> None:
    # Given a step limited to 3 starts per 0.5 s window, with no retry (a second attempt would be a dead letter)
    period, limit, total = 0.5, 3, 9
    starts: list[float] = []
    attempts: list[int] = []

    async def handle(input: Any, ctx: Any) -> None:
        starts.append(time.time())
        attempts.append(ctx.trigger.attempt)

    config = {"rateLimit": {"limit": limit, "period": period}, "max_retries": 0}
    app = await start_app([step({"name": "throttled", "triggers": [queue("jobs", config=config)]}, handle)])
    # When 9 messages are sent at once
    sent_at = time.time()
    for n in range(total):
        await motia.enqueue({"topic": "jobs", "data": {"n": n}})
    await app.drain(timeout=30)
    # Then every one ran once, on its first attempt, at most 3 per window
    assert len(starts) == total and attempts == [1] * total
    assert_throttled(starts, sent_at=sent_at, period=period, limit=limit)
    assert await app.state.backend.dead_letters() == []
    # The counters live in the reserved scope: never listed among the app's scopes
    assert not any(scope.startswith(INTERNAL_SCOPE_PREFIX) for scope in await app.state.list_groups())
    assert RATE_SCOPE.startswith(INTERNAL_SCOPE_PREFIX)


async def test_a_keyed_rate_limit_throttles_each_key_alone(start_app: StartApp) -> None:
    # Given 2 starts per 0.5 s window per tenant
    period, limit = 0.5, 2
    starts: dict[str, list[float]] = defaultdict(list)

    async def handle(input: Any, ctx: Any) -> None:
        starts[input["tenant"]].append(time.time())
        assert ctx.trigger.attempt == 1

    config = {"rate_limit": {"limit": limit, "period": period, "key": "tenant"}}
    app = await start_app([step({"name": "per-tenant", "triggers": [queue("jobs", config=config)]}, handle)])
    # When a quiet tenant sends 2 messages and a busy one 6
    sent_at = time.time()
    for n in range(2):
        await motia.enqueue({"topic": "jobs", "data": {"tenant": "quiet", "n": n}})
    for n in range(6):
        await motia.enqueue({"topic": "jobs", "data": {"tenant": "busy", "n": n}})
    await app.drain(timeout=30)
    # Then each tenant had at most 2 starts per window
    assert len(starts["busy"]) == 6 and len(starts["quiet"]) == 2
    assert_throttled(starts["busy"], sent_at=sent_at, period=period, limit=limit)
    # and they were counted per tenant, never for the step as a whole
    counters = [
        orjson.loads(record.key)
        for record in await app.state.backend.items(RATE_SCOPE, prefix=None, after=None, limit=None)
    ]
    assert {tenant for _, tenant, _, _ in counters} == {"quiet", "busy"}
    with pytest.raises(EnqueueError, match="no usable flow-control key 'tenant'"):
        await motia.enqueue({"topic": "jobs", "data": {"n": 1}})


async def test_a_rate_limit_and_a_keyed_concurrency_of_1_keep_each_key_in_order(start_app: StartApp) -> None:
    # Given both on one key: postponed heads hold their key's younger messages behind them
    period, limit = 0.3, 2
    seen = Overlap()

    async def handle(input: Any, ctx: Any) -> None:
        await seen.handle(input["k"], input["n"], ctx.trigger.attempt, 0.0)

    config = {"concurrency": {"key": "k", "limit": 1}, "rate_limit": {"limit": limit, "period": period, "key": "k"}}
    app = await start_app([step({"name": "both", "triggers": [queue("jobs", config=config)]}, handle)])
    for n in range(6):
        for key in ("a", "b"):
            await motia.enqueue({"topic": "jobs", "data": {"k": key, "n": n}})
    await app.drain(timeout=20)
    assert seen.order == {"a": list(range(6)), "b": list(range(6))}
    assert dict(seen.most) == {"a": 1, "b": 1} and set(seen.attempts) == {1}
