"""The store's part of keyed flow control (``motia.runtime.flow_control``), on every backend: ``postpone``
gives a leased delivery back without counting the claim as an attempt, keeping its place in its key."""

from __future__ import annotations

from typing import Any

import pytest

from motia.state.backends.base import NewDelivery
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)


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
