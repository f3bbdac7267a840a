"""A dispatch round of SQLite's outbox reads the subscriptions from the backend's copy while the ``triggers``
number it was read under holds (issue 15): a subscription another process registers or prunes meanwhile
changes the number, so the next round serves the subscriptions the file holds, never a stale copy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from motia import StateManager
from motia.state.backends.types import Subscription

WATCH = [Subscription("watcher", "s")]


async def claim_all(sm: StateManager, step: str) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    while claimed := await sm.backend.claim([step], owner="t", limit=100, lease=60):
        payloads.extend(orjson.loads(d.payload) for d in claimed)
        await sm.backend.complete_many([d.id for d in claimed], owner="t")
    return payloads


async def test_a_round_serves_a_subscription_another_process_registered_after_the_copy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with StateManager.from_url(url) as writer, StateManager.from_url(url) as other:
        # Given a writer whose copy of the subscriptions is loaded by its dispatch of a lone write
        await writer.backend.enable_events()
        await writer.backend.dispatch_events(WATCH)
        await writer.set("s", "a", 1)
        assert await writer.backend.dispatch_events(WATCH) == 1
        # When another process registers a second subscription, and the writer's next lone write is dispatched
        await other.backend.dispatch_events([Subscription("late", "s")])
        await writer.set("s", "b", 1)
        assert await writer.backend.dispatch_events(WATCH) == 1
        # Then that round delivered to the new subscription too (every registered one is served)
        assert [p["item_id"] for p in await claim_all(writer, "late")] == ["b"]
        assert [p["item_id"] for p in await claim_all(writer, "watcher")] == ["a", "b"]


async def test_rounds_after_registration_deliver_each_event_once_per_subscription(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    both = [*WATCH, Subscription("any", None, None)]
    async with StateManager.from_url(url) as sm:
        # Given two subscriptions registered (one to any scope), then rounds that find them in the copy
        await sm.backend.enable_events()
        await sm.backend.dispatch_events(both)
        for round_ in range(3):
            for index in range(4):
                await sm.set("s", f"k{index}", round_)
            await sm.set("__motia.internal", "x", round_)  # the runtime's own scope: no subscription to any scope
            assert await sm.backend.dispatch_events(both) == 5
        # Then each event reached each matching subscription once, in seq order, ids from their seqs
        for step in ("watcher", "any"):
            payloads = await claim_all(sm, step)
            assert [(p["item_id"], p["new_value"]) for p in payloads] == [
                (f"k{index}", round_) for round_ in range(3) for index in range(4)
            ]
            seqs = [p["seq"] for p in payloads]
            assert seqs == sorted(set(seqs))
