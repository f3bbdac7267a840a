"""The console feed shows each state event once (``runtime/feed_once.py``): however many steps receive it, however
often it is delivered again, and while the seqs it remembers stay bounded (two generations of ``KEPT``)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from motia.runtime import feed_once
from motia.runtime.events import StateEventHub
from motia.runtime.feed_once import FeedOnce


def event(seq: int | None, key: str = "k") -> dict[str, Any]:
    return {"event_type": "set", "group_id": "s", "item_id": key, "seq": seq, "timestamp": 1.0}


async def shown(hub: StateEventHub) -> list[Any]:
    subscription, replay = hub.subscribe(after=0)
    hub._unsubscribe(subscription)
    return [(e["seq"], e["item_id"]) for e in replay]


def feed(history: int = 1000) -> tuple[FeedOnce, StateEventHub]:
    hub = StateEventHub(history=history)
    return FeedOnce(SimpleNamespace(state_events=hub)), hub


def flush(once: FeedOnce, *events: dict[str, Any]) -> None:
    """The worker's part: each event's seq and its payload (the JSON the store keeps), then the flush."""
    once.waiting.extend((e["seq"], orjson.dumps(e)) for e in events)
    once.flush()


async def test_an_event_is_shown_once_however_often_and_to_however_many_steps_it_is_delivered() -> None:
    once, hub = feed()
    # Given one event delivered to two steps in one claim, then delivered again (a retry) in a later claim
    flush(once, event(1, "a"), event(1, "a"), event(2, "b"))
    flush(once, event(1, "a"), event(3, "c"))
    # Then each seq is shown once, in the order first seen; an event without a seq (which no store makes: it
    # could not be told apart from its redeliveries) is not shown
    flush(once, event(None, "x"))
    assert await shown(hub) == [(1, "a"), (2, "b"), (3, "c")]
    assert once.waiting == []


async def test_the_last_kept_seqs_are_remembered_across_the_generation_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_once, "KEPT", 4)
    once, hub = feed()
    # Given more seqs than one generation holds, one claim at a time
    for seq in range(1, 11):
        flush(once, event(seq))
        # Then the memory stays bounded (two generations), and the last KEPT seqs are always remembered
        assert len(once._seen) + len(once._seen_before) <= 2 * feed_once.KEPT
        for recent in range(max(1, seq - feed_once.KEPT + 1), seq + 1):
            flush(once, event(recent))
    assert [seq for seq, _ in await shown(hub)] == list(range(1, 11))
    # And a seq old enough to be forgotten is shown again (a bound, not a promise to remember everything)
    flush(once, event(1, "again"))
    assert (await shown(hub))[-1] == (1, "again")


async def test_a_feed_without_a_hub_or_with_a_failing_one_never_fails_the_delivery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bare = FeedOnce(SimpleNamespace())
    flush(bare, event(1))
    assert bare.waiting == []

    class Broken:
        def record_payloads(self, payloads: list[bytes]) -> None:
            raise RuntimeError("feed down")

    broken = FeedOnce(SimpleNamespace(state_events=Broken()))
    with caplog.at_level(logging.ERROR, logger="motia.runtime"):
        flush(broken, event(1), event(2))
    assert "publishing 2 event(s) to the console feed failed" in caplog.text
