"""``StateBackend.stats``: what the store holds, counted the same on every backend, read without writing. Run over
every backend with the fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from motia.state.backends.base import NewDelivery, ScopeStats, StoreStats, StreamTriggerSubscription, Subscription
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)


def counts(stats: StoreStats) -> dict[str, Any]:
    """Every figure but the bytes, which each backend measures its own way."""
    return {
        "scopes": {name: scope.keys for name, scope in stats.scopes.items()},
        "expired": stats.expired,
        "outbox": stats.outbox,
        "pending": stats.pending,
        "dead_letters": stats.dead_letters,
        "subscriptions": stats.subscriptions,
        "steps": stats.steps,
        "streams": (stats.stream_groups, stats.stream_items, stats.stream_changes),
    }


async def test_an_empty_store_holds_nothing(state: StateManager) -> None:
    stats = await state.backend.stats()
    assert counts(stats) == {
        "scopes": {},
        "expired": 0,
        "outbox": 0,
        "pending": 0,
        "dead_letters": 0,
        "subscriptions": 0,
        "steps": 0,
        "streams": (0, 0, 0),
    }
    assert isinstance(stats.size["total"], int) and stats.size["total"] >= 0
    assert stats.to_json()["keys"] == 0


async def test_keys_per_scope_with_their_bytes_and_the_expired_ones_not_yet_swept(
    state: StateManager, clock: Any
) -> None:
    # Given two scopes, one key of which expires, and a runtime scope
    await state.set("users", "u1", {"name": "Ann"})
    await state.set("users", "u2", {"name": "Bob"}, ttl=10)
    await state.set("orders", "o1", {"total": 12})
    await state.set("__motia.idempotency", "k", {"status": 200}, ttl=10)
    clock.advance(11)
    # When stats are read (twice: reading changes nothing)
    first = await state.backend.stats()
    second = await state.backend.stats()
    # Then every stored key counts, the expired ones too, in their scope and in expired
    assert counts(first)["scopes"] == {"users": 2, "orders": 1, "__motia.idempotency": 1}
    assert first.expired == 2
    assert counts(second) == counts(first)
    for name, scope in first.scopes.items():
        assert isinstance(scope, ScopeStats)
        assert scope.bytes is None or scope.bytes >= scope.keys * len('{"x":1}'), name
    # and the expired keys are still there for the sweep, which removes what stats counted
    assert await state.purge_expired() == 2
    after = await state.backend.stats()
    assert counts(after)["scopes"] == {"users": 1, "orders": 1}
    assert after.expired == 0
    assert after.to_json()["keys"] == 2


async def test_outbox_deliveries_dead_letters_subscriptions_and_steps(state: StateManager) -> None:
    backend = state.backend
    # Given events enabled and two writes not yet dispatched
    await backend.enable_events()
    await state.set("orders", "o1", {"n": 1})
    await state.set("orders", "o2", {"n": 2})
    assert (await backend.stats()).outbox == 2
    # When they are dispatched to one subscriber, and three queue messages are added
    await backend.dispatch_events([Subscription("audit", "orders")])
    await backend.enqueue([NewDelivery(f"m{i}", "worker", "queue", b"{}") for i in range(3)])
    await backend.add_stream_subscriptions([StreamTriggerSubscription("feed", "chat")])
    await backend.touch_steps(["audit", "worker", "feed"])
    stats = await backend.stats()
    # Then the outbox is empty and its events wait as deliveries beside the messages
    assert (stats.outbox, stats.pending, stats.subscriptions, stats.steps) == (0, 5, 2, 3)
    # When one delivery fails for good
    (delivery,) = await backend.claim(["worker"], owner="w", limit=1, lease=30)
    assert await backend.dead_letter(delivery.id, owner="w", error="boom")
    stats = await backend.stats()
    assert (stats.pending, stats.dead_letters) == (4, 1)


async def test_stream_groups_items_and_changes(state: StateManager) -> None:
    backend = state.backend
    # Given two items written in one group, one of them deleted, and an event in another group
    await backend.stream_write("chat", "room1", "a", b'{"t":1}', if_version=None, history=10)
    await backend.stream_write("chat", "room1", "b", b'{"t":2}', if_version=None, history=10)
    await backend.stream_write("chat", "room1", "a", None, if_version=None, history=10)
    await backend.stream_send("chat", "room2", None, b'{"type":"typing","data":{}}', history=10)
    stats = await backend.stats()
    # Then both groups are known (room2 holds no item), one item is stored, and the four changes are logged
    assert (stats.stream_groups, stats.stream_items) == (2, 1)
    assert stats.stream_changes >= 4  # a backend may keep a group's history apart from the tail's log
    assert (await backend.stats()).stream_changes == stats.stream_changes


async def test_prune_shows_in_stats(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.enqueue([NewDelivery("m1", "worker", "queue", b"{}")])
    (delivery,) = await backend.claim(["worker"], owner="w", limit=1, lease=30)
    assert await backend.dead_letter(delivery.id, owner="w", error="boom")
    clock.advance(100)
    assert (await backend.stats()).dead_letters == 1
    await backend.prune(dead_letter_age=50, step_age=None)
    assert (await backend.stats()).dead_letters == 0
