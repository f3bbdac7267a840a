"""Claims behind a hot key (issue 15): a backlog on a few order keys whose heads are leased, so nearly every waiting
delivery is blocked. Every backend, the same rules as a short backlog: the oldest ``order_slots`` of each key,
unordered deliveries in seq order among them, several steps at once, delays and expired leases. The backlog is
longer than the SQLite claim's seq-ordered walk reads (``BLOCKED_WINDOW``), so there the rest is found from the
index."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from motia.state.backends.base import NewDelivery, StateBackend
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

#: Longer than the SQLite claim's window of blocked deliveries (64).
BACKLOG = 150


def hot(step: str, key: str, count: int = BACKLOG, slots: int = 1) -> list[NewDelivery]:
    """``count`` deliveries of one key, ids ``key-0``, ``key-1``, … oldest first."""
    return [NewDelivery(f"{key}-{n}", step, "queue", b"1", order_key=key, order_slots=slots) for n in range(count)]


async def claim_ids(backend: StateBackend, steps: list[str], limit: int = 16) -> list[str]:
    return [d.id for d in await backend.claim(steps, owner="w", limit=limit, lease=60)]


async def test_a_claim_behind_a_hot_key_takes_the_head_of_each_key_and_unordered_ones_in_seq_order(
    state: StateManager,
) -> None:
    # Given a long backlog on one key, then another key and unordered deliveries behind it, then more hot ones
    backend = state.backend
    await backend.enqueue(hot("worker", "hot"))
    await backend.enqueue([*hot("worker", "late", 3), NewDelivery("u0", "worker", "queue", b"1")])
    await backend.enqueue([NewDelivery("u1", "worker", "queue", b"1"), *hot("worker", "last", 2)])
    # When claimed: the head of each key and every unordered delivery, oldest first
    assert await claim_ids(backend, ["worker"]) == ["hot-0", "late-0", "u0", "u1", "last-0"]
    # Then nothing more while the heads are leased, and a limit takes the oldest
    assert await claim_ids(backend, ["worker"]) == []
    assert await backend.complete_many(["late-0", "last-0"], owner="w") == {"late-0", "last-0"}
    assert await claim_ids(backend, ["worker"], limit=1) == ["late-1"]
    assert await claim_ids(backend, ["worker"]) == ["last-1"]
    # And the hot key moves one at a time, in order
    assert await backend.complete("hot-0", owner="w")
    assert await claim_ids(backend, ["worker"]) == ["hot-1"]


async def test_order_slots_behind_a_hot_key_lease_that_many_of_each_key(state: StateManager) -> None:
    # Given a hot key of three slots, then a key of two
    backend = state.backend
    await backend.enqueue(hot("worker", "hot", slots=3))
    await backend.enqueue(hot("worker", "pair", 4, slots=2))
    # Then a claim takes the three oldest of the one and the two oldest of the other
    assert await claim_ids(backend, ["worker"]) == ["hot-0", "hot-1", "hot-2", "pair-0", "pair-1"]
    assert await claim_ids(backend, ["worker"]) == []
    # and a slot freed takes the next of its key only
    assert await backend.complete("hot-1", owner="w")
    assert await claim_ids(backend, ["worker"]) == ["hot-3"]


async def test_expired_leases_behind_a_hot_key_are_claimable_again(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue(hot("worker", "hot"))
    await backend.enqueue(hot("worker", "late", 2))
    assert await claim_ids(backend, ["worker"]) == ["hot-0", "late-0"]
    clock.advance(61)
    again = await backend.claim(["worker"], owner="w", limit=16, lease=60)
    assert [(d.id, d.attempts) for d in again] == [("hot-0", 2), ("late-0", 2)]


async def test_a_claim_of_several_steps_behind_hot_keys_takes_the_oldest_of_all(state: StateManager) -> None:
    # Given hot keys on two steps, and a key of each added after both backlogs
    backend = state.backend
    await backend.enqueue(hot("a", "hot-a"))
    await backend.enqueue(hot("b", "hot-b"))
    await backend.enqueue(hot("b", "late-b", 2))
    await backend.enqueue(hot("a", "late-a", 2))
    # Then one claim of both takes each key's head in seq order, and a limit the oldest of them
    assert await claim_ids(backend, ["a", "b"]) == ["hot-a-0", "hot-b-0", "late-b-0", "late-a-0"]
    assert await backend.complete_many(["late-a-0", "late-b-0"], owner="w") == {"late-a-0", "late-b-0"}
    assert await claim_ids(backend, ["b", "a"], limit=1) == ["late-b-1"]
    assert await claim_ids(backend, ["a"]) == ["late-a-1"]


async def test_a_delayed_head_behind_a_hot_key_holds_its_key(state: StateManager, clock: Any) -> None:
    # Given a hot key, then a key whose head is delayed and whose next delivery is not
    backend = state.backend
    await backend.enqueue(hot("worker", "hot"))
    await backend.enqueue([NewDelivery("late-0", "worker", "queue", b"1", order_key="late", delay=10.0)])
    await backend.enqueue([NewDelivery("late-1", "worker", "queue", b"1", order_key="late")])
    # Then the delayed head holds its key until it is due
    assert await claim_ids(backend, ["worker"]) == ["hot-0"]
    clock.advance(10)
    assert await claim_ids(backend, ["worker"]) == ["late-0"]
    # and a retry's backoff holds it again, across the hot key's backlog
    assert await backend.retry("late-0", owner="w", delay=5.0, error="boom")
    assert await claim_ids(backend, ["worker"]) == []
    clock.advance(5)
    again = await backend.claim(["worker"], owner="w", limit=16, lease=60)
    assert [(d.id, d.attempts) for d in again] == [("late-0", 2)]


async def test_a_claim_behind_many_busy_keys_finds_a_free_delivery_past_them(state: StateManager) -> None:
    # Given three rounds of deliveries over 100 keys, the head of every key leased
    backend = state.backend
    await backend.enqueue(
        [NewDelivery(f"k{n % 100}-{n // 100}", "worker", "queue", b"1", order_key=f"k{n % 100}") for n in range(300)]
    )
    assert len(await claim_ids(backend, ["worker"], limit=100)) == 100
    # When the last key's head is settled
    assert await backend.complete("k99-0", owner="w")
    # Then a claim finds that key's next delivery past the 99 blocked ones before it, and nothing else
    assert await claim_ids(backend, ["worker"]) == ["k99-1"]
    assert await claim_ids(backend, ["worker"]) == []


async def test_concurrent_claims_behind_hot_keys_lease_each_delivery_once_in_key_order(state: StateManager) -> None:
    # Given a hot key, twenty keys three deep and unordered deliveries, in one backlog
    backend = state.backend
    await backend.enqueue(hot("worker", "hot", 100))
    await backend.enqueue([d for n in range(20) for d in hot("worker", f"k{n}", 3)])
    await backend.enqueue([NewDelivery(f"u{n}", "worker", "queue", b"1") for n in range(30)])
    # When eight claimers at once each take what they can
    first = await asyncio.gather(*(claim_ids(backend, ["worker"], limit=8) for _ in range(8)))
    # Then every key's head and every unordered delivery is leased, each by one claimer
    leased = [delivery_id for ids in first for delivery_id in ids]
    heads = {"hot-0", *(f"k{n}-0" for n in range(20)), *(f"u{n}" for n in range(30))}
    assert sorted(leased) == sorted(heads)
    assert await backend.complete_many(leased, owner="w") == heads

    # And claimers that complete what they lease drain it all, once each, every key in its order
    order: list[str] = []

    async def drain() -> None:
        while batch := await claim_ids(backend, ["worker"], limit=4):
            order.extend(batch)
            assert await backend.complete_many(batch, owner="w") == set(batch)

    await asyncio.gather(*(drain() for _ in range(4)))
    assert await backend.pending("worker") == 0
    assert sorted(order) == sorted(
        {*(f"hot-{n}" for n in range(1, 100)), *(f"k{n}-{m}" for n in range(20) for m in (1, 2))}
    )
    for key in ["hot", *(f"k{n}" for n in range(20))]:
        seen = [int(delivery_id.rsplit("-", 1)[1]) for delivery_id in order if delivery_id.rsplit("-", 1)[0] == key]
        assert seen == sorted(seen)
