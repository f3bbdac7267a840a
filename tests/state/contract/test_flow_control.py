"""The store's part of keyed flow control (``motia.runtime.flow_control``), on every backend: ``postpone``
gives a leased delivery back without counting the claim as an attempt, keeping its place in its key."""

from __future__ import annotations

from typing import Any

import pytest

from motia.state.backends.base import NewDelivery, PruneResult
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

DAY = 86400.0


async def test_postpone_waits_its_delay_and_does_not_count_the_claim(state: StateManager, clock: Any) -> None:
    # Given a delivery claimed once and failed once (attempts 1), then claimed again (attempts 2)
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    (first,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    assert await backend.retry(first.id, owner="a", delay=0, error="boom")
    (second,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    assert second.attempts == 2
    # When it is postponed by 5 s
    assert await backend.postpone("m1", owner="a", delay=5)
    # Then nobody can claim it before then, it stays pending, and the postponed claim did not count
    assert await backend.claim(["worker"], owner="b", limit=1, lease=30) == []
    assert await backend.pending("worker") == 1
    clock.advance(5)
    (again,) = await backend.claim(["worker"], owner="b", limit=1, lease=30)
    assert (again.id, again.attempts) == ("m1", 2)


async def test_postpone_needs_the_lease(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"1")])
    (held,) = await backend.claim(["worker"], owner="a", limit=1, lease=30)
    # Not the owner, or an unknown id: nothing changes
    assert not await backend.postpone("m1", owner="b", delay=5)
    assert not await backend.postpone("missing", owner="a", delay=5)
    clock.advance(31)  # the lease lapses and another owner takes it
    (taken,) = await backend.claim(["worker"], owner="b", limit=1, lease=30)
    assert taken.attempts == 2
    assert not await backend.postpone(held.id, owner="a", delay=5)
    assert await backend.complete(taken.id, owner="b")
    assert await backend.pending("worker") == 0


async def test_a_postponed_delivery_keeps_its_place_in_its_key(state: StateManager, clock: Any) -> None:
    # Given two deliveries of one order key
    backend = state.backend
    await backend.enqueue(
        [
            NewDelivery("k0", "worker", "queue", b"1", order_key="key:u1"),
            NewDelivery("k1", "worker", "queue", b"2", order_key="key:u1"),
        ]
    )
    (head,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
    assert head.id == "k0"
    # When the head is postponed
    assert await backend.postpone("k0", owner="w", delay=3)
    # Then the younger one still waits behind it, and the head comes first once its delay is over
    assert await backend.claim(["worker"], owner="w", limit=5, lease=60) == []
    clock.advance(3)
    (again,) = await backend.claim(["worker"], owner="w", limit=5, lease=60)
    assert (again.id, again.attempts) == ("k0", 1)
    assert await backend.complete("k0", owner="w")
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=5, lease=60)] == ["k1"]


async def test_order_slots_lease_that_many_of_a_key_at_once_oldest_first(state: StateManager, clock: Any) -> None:
    # Given five deliveries of key u1 with 2 slots, and one of key u2
    backend = state.backend
    await backend.enqueue(
        [NewDelivery(f"u1-{n}", "worker", "queue", b"1", order_key="key:u1", order_slots=2) for n in range(5)]
    )
    await backend.enqueue([NewDelivery("u2-0", "worker", "queue", b"1", order_key="key:u2", order_slots=2)])
    # Then the two oldest of u1 (and u2's) are leased, however many are asked for
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=10, lease=30)] == ["u1-0", "u1-1", "u2-0"]
    assert await backend.claim(["worker"], owner="w", limit=10, lease=30) == []
    # When one completes, the next oldest takes its slot
    assert await backend.complete("u1-1", owner="w")
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=10, lease=30)] == ["u1-2"]
    # A retried one keeps its slot (its delay holds the slot, not the key)
    assert await backend.retry("u1-0", owner="w", delay=5, error="boom")
    assert await backend.claim(["worker"], owner="w", limit=10, lease=30) == []
    # A crashed holder's slot is freed by its lease expiring: it is claimed again, not a younger one
    clock.advance(31)
    assert sorted(d.id for d in await backend.claim(["worker"], owner="x", limit=10, lease=30)) == [
        "u1-0",
        "u1-2",
        "u2-0",
    ]
    for delivery_id in ("u1-0", "u1-2", "u2-0"):
        assert await backend.complete(delivery_id, owner="x")
    assert [d.id for d in await backend.claim(["worker"], owner="x", limit=10, lease=30)] == ["u1-3", "u1-4"]
    for delivery_id in ("u1-3", "u1-4"):
        assert await backend.complete(delivery_id, owner="x")
    assert await backend.pending("worker") == 0
    # And the key is free again: a new delivery of it is claimable at once
    await backend.enqueue([NewDelivery("u1-5", "worker", "queue", b"1", order_key="key:u1", order_slots=2)])
    assert [d.id for d in await backend.claim(["worker"], owner="x", limit=10, lease=30)] == ["u1-5"]


async def test_order_slots_survive_dead_letters(state: StateManager) -> None:
    # Given three deliveries of a key with 2 slots, the first two leased
    backend = state.backend
    await backend.enqueue(
        [NewDelivery(f"k{n}", "worker", "queue", b"1", order_key="key:k", order_slots=2) for n in range(3)]
    )
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=10, lease=30)] == ["k0", "k1"]
    # When one is dead-lettered, the third takes its slot
    assert await backend.dead_letter("k0", owner="w", error="bad")
    assert [d.id for d in await backend.claim(["worker"], owner="w", limit=10, lease=30)] == ["k2"]


async def test_slotted_deliveries_orphaned_by_retention_free_their_key(state: StateManager, clock: Any) -> None:
    # Given a step no app serves any more, with four deliveries of a 2-slot key: one leased, three waiting
    backend = state.backend
    await backend.touch_steps(["gone"])
    await backend.enqueue(
        [NewDelivery(f"s{n}", "gone", "queue", b"1", order_key="key:s", order_slots=2) for n in range(4)]
    )
    assert [d.id for d in await backend.claim(["gone"], owner="w", limit=10, lease=100 * DAY)] == ["s0", "s1"]
    assert await backend.retry("s1", owner="w", delay=0, error="boom")
    clock.advance(2 * DAY)
    # When retention forgets the step, the waiting ones become dead letters and the leased one stays
    assert await backend.prune(dead_letter_age=None, step_age=DAY) == PruneResult(0, 0, 3)
    assert sorted(letter.id for letter in await backend.dead_letters("gone")) == ["s1", "s2", "s3"]
    assert await backend.complete("s0", owner="w")
    # Then, once the step is served again, its key has both slots free
    await backend.touch_steps(["gone"])
    await backend.enqueue(
        [NewDelivery(f"t{n}", "gone", "queue", b"1", order_key="key:s", order_slots=2) for n in range(3)]
    )
    assert [d.id for d in await backend.claim(["gone"], owner="w", limit=10, lease=60)] == ["t0", "t1"]
