"""PostgreSQL deliveries beyond the contract (``contract/test_delivery.py``): with producers and claimers on
several connections at once, the deliveries of one order key are leased one at a time, in each producer's order,
and each event is dispatched exactly once by racing dispatchers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from motia.state.backends.base import NewDelivery, Subscription
from motia.state.backends.postgres import PostgresBackend


@pytest.fixture
async def opened(postgres_url: str) -> AsyncIterator[Callable[[], PostgresBackend]]:
    """``opened()``: a new PostgresBackend instance (its own pool) on one fresh store, closed after the test."""
    backends: list[PostgresBackend] = []

    def open_one() -> PostgresBackend:
        backend = PostgresBackend(postgres_url.replace("timeout=5", "timeout=30"))
        backends.append(backend)
        return backend

    yield open_one
    for backend in backends:
        await backend.aclose()


async def test_one_order_key_is_leased_one_at_a_time_in_each_producers_order(
    opened: Callable[[], PostgresBackend],
) -> None:
    producers = [opened() for _ in range(3)]
    claimers = [opened() for _ in range(3)]
    total = 3 * 40
    handled: list[str] = []
    in_flight = 0
    most = 0

    async def produce(backend: PostgresBackend, name: str) -> None:
        for n in range(40):
            new = NewDelivery(f"{name}-{n:02d}", "fifo", "queue", b"%d" % n, order_key="fifo:k")
            assert await backend.enqueue([new]) == 1

    async def claim(backend: PostgresBackend, owner: str) -> None:
        nonlocal in_flight, most
        while len(handled) < total:
            claimed = await backend.claim(["fifo"], owner=owner, limit=10, lease=30)
            in_flight += len(claimed)
            most = max(most, in_flight)
            for delivery in claimed:
                await asyncio.sleep(0)  # the "handler": others claim meanwhile
                handled.append(delivery.id)
                in_flight -= 1
                assert await backend.complete(delivery.id, owner=owner)
            if not claimed:
                await asyncio.sleep(0.005)

    # Given three producers enqueueing one order key at once, and three claimers taking them as they come
    await asyncio.wait_for(
        asyncio.gather(
            *(produce(backend, f"p{index}") for index, backend in enumerate(producers)),
            *(claim(backend, f"c{index}") for index, backend in enumerate(claimers)),
        ),
        120,
    )
    # Then never two were leased at once, each was handled once, and each producer's in its order
    assert most == 1
    assert sorted(handled) == sorted(f"p{p}-{n:02d}" for p in range(3) for n in range(40))
    for p in range(3):
        mine = [delivery_id for delivery_id in handled if delivery_id.startswith(f"p{p}-")]
        assert mine == sorted(mine)


async def test_racing_dispatchers_turn_each_event_into_its_deliveries_once(
    opened: Callable[[], PostgresBackend],
) -> None:
    writer, *dispatchers = [opened() for _ in range(4)]
    await writer.enable_events()
    subscriptions = [Subscription("watch")]

    async def write() -> None:
        for n in range(150):
            await writer.set("s", f"k{n % 7}", orjson.dumps({"n": n}), ttl=None, if_version=None)

    async def dispatch(backend: PostgresBackend, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not await backend.dispatch_events(subscriptions, limit=7):
                await asyncio.sleep(0.002)

    # Given writes while three dispatchers race to consume their events
    stop = asyncio.Event()
    running = [asyncio.create_task(dispatch(backend, stop)) for backend in dispatchers]
    await write()
    while await writer.dispatch_events(subscriptions):
        pass
    stop.set()
    await asyncio.gather(*running)
    # Then each write has exactly one delivery, and those of one key are claimed in write order
    payloads = []
    while claimed := await writer.claim(["watch"], owner="w", limit=1000, lease=30):
        for delivery in claimed:
            payloads.append(orjson.loads(delivery.payload))
            assert await writer.complete(delivery.id, owner="w")
    assert sorted(payload["new_value"]["n"] for payload in payloads) == list(range(150))
    for key in range(7):
        ns = [payload["new_value"]["n"] for payload in payloads if payload["item_id"] == f"k{key}"]
        assert ns == sorted(ns)
