"""Stream triggers in the store (``StreamStore.add_stream_subscriptions``), run over every backend: a change makes
one delivery per matching subscription (stream, and group/item when given) in its own transaction, with the payload
of ``stream_event_payload``, claimable like every delivery; retention forgets the subscriptions of stale steps."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from motia.exceptions import StateConflictError
from motia.state.backends._events import stream_event_payload
from motia.state.backends.base import StreamChange, StreamTriggerSubscription
from motia.state.manager import StateManager

pytestmark = pytest.mark.delivery  # runs on DELIVERY_BACKENDS (tests/state/conftest.py)

DAY = 86_400.0
STEPS = ["any", "group", "item", "other"]
SUBSCRIPTIONS = [
    StreamTriggerSubscription("any", "orders"),
    StreamTriggerSubscription("group", "orders", "g1"),
    StreamTriggerSubscription("item", "orders", "g1", "i1"),
    StreamTriggerSubscription("other", "other"),
]


async def delivered(state: StateManager) -> list[tuple[str, str, dict[str, Any]]]:
    """Claim and complete every delivery of STEPS: (step, id, payload) sorted by id."""
    backend = state.backend
    found = []
    while claimed := await backend.claim(STEPS, owner="test", limit=100, lease=60):
        for delivery in claimed:
            assert delivery.kind == "stream"
            found.append((delivery.step, delivery.id, orjson.loads(delivery.payload)))
            assert await backend.complete(delivery.id, owner="test")
    return sorted(found, key=lambda entry: entry[1])


async def put(state: StateManager, stream: str, group: str, item: str, data: bytes | None) -> StreamChange:
    change = await state.backend.stream_write(stream, group, item, data, if_version=None, history=10)
    assert change is not None
    return change


@pytest.mark.parametrize(
    ("stream", "group", "item", "steps"),
    [
        ("orders", "g1", "i1", ["any", "group", "item"]),
        ("orders", "g1", "i2", ["any", "group"]),
        ("orders", "g2", "i1", ["any"]),
        ("other", "g1", "i1", ["other"]),
        ("unwatched", "g1", "i1", []),
    ],
)
async def test_a_change_makes_one_delivery_per_matching_subscription(
    state: StateManager, stream: str, group: str, item: str, steps: list[str]
) -> None:
    await state.backend.add_stream_subscriptions(SUBSCRIPTIONS)
    change = await put(state, stream, group, item, b'{"n":1}')
    expected = orjson.loads(stream_event_payload(change))
    assert await delivered(state) == sorted(
        [(step, f"stream:{change.position}:{step}", expected) for step in steps], key=lambda entry: entry[1]
    )


async def test_every_kind_of_change_is_delivered_with_its_payload(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.add_stream_subscriptions([StreamTriggerSubscription("any", "orders")])
    made = [
        await put(state, "orders", "g", "i", b'{"n":1}'),
        await put(state, "orders", "g", "i", b'{"n":2}'),
        await backend.stream_send("orders", "g", "i", b'{"type":"ping","data":1}', history=10),
        await put(state, "orders", "g", "i", None),
    ]
    payloads = [payload for _, _, payload in await delivered(state)]
    assert payloads == [orjson.loads(stream_event_payload(change)) for change in made]
    assert payloads[1] == {
        "type": "stream",
        "event_type": "update",
        "stream_name": "orders",
        "group_id": "g",
        "item_id": "i",
        "old_value": {"n": 1},
        "new_value": {"n": 2},
        "data": {"n": 2},
        "seq": 2,
        "position": made[1].position,
        "timestamp": clock(),
    }
    assert (payloads[2]["event_type"], payloads[2]["data"]) == ("event", {"type": "ping", "data": 1})
    assert (payloads[3]["event_type"], payloads[3]["data"]) == ("delete", {"n": 2})


async def test_an_event_without_item_matches_no_item_filter(state: StateManager) -> None:
    await state.backend.add_stream_subscriptions(SUBSCRIPTIONS)
    sent = await state.backend.stream_send("orders", "g1", None, b"{}", history=10)
    assert [(step, delivery_id) for step, delivery_id, _ in await delivered(state)] == [
        ("any", f"stream:{sent.position}:any"),
        ("group", f"stream:{sent.position}:group"),
    ]


async def test_registering_again_is_harmless_and_earlier_changes_make_nothing(state: StateManager) -> None:
    backend = state.backend
    await put(state, "orders", "g1", "early", b"1")
    await backend.add_stream_subscriptions(SUBSCRIPTIONS)
    await backend.add_stream_subscriptions(SUBSCRIPTIONS[:2])
    await backend.add_stream_subscriptions([])
    change = await put(state, "orders", "g1", "i1", b"1")
    assert [delivery_id for _, delivery_id, _ in await delivered(state)] == sorted(
        f"stream:{change.position}:{step}" for step in ("any", "group", "item")
    )


async def test_no_delivery_for_a_change_not_made(state: StateManager) -> None:
    backend = state.backend
    await backend.add_stream_subscriptions(SUBSCRIPTIONS)
    await put(state, "orders", "g1", "i1", b"1")
    await delivered(state)
    assert await backend.stream_write("orders", "g1", "absent", None, if_version=None, history=10) is None
    with pytest.raises(StateConflictError):
        await backend.stream_write("orders", "g1", "i1", b"2", if_version=7, history=10)
    assert await backend.pending() == 0


async def test_stream_deliveries_are_ordered_per_group(state: StateManager) -> None:
    """Deliveries of one group are claimed one at a time, in seq order (they share an order key)."""
    backend = state.backend
    await backend.add_stream_subscriptions([StreamTriggerSubscription("any", "orders")])
    first = await put(state, "orders", "g", "a", b"1")
    second = await put(state, "orders", "g", "b", b"1")
    claimed = await backend.claim(["any"], owner="w", limit=10, lease=60)
    assert [delivery.id for delivery in claimed] == [f"stream:{first.position}:any"]
    assert await backend.complete(claimed[0].id, owner="w")
    claimed = await backend.claim(["any"], owner="w", limit=10, lease=60)
    assert [delivery.id for delivery in claimed] == [f"stream:{second.position}:any"]


async def test_prune_forgets_the_stream_subscriptions_of_stale_steps(state: StateManager, clock: Any) -> None:
    backend = state.backend
    await backend.touch_steps(["any", "group"])
    await backend.add_stream_subscriptions(SUBSCRIPTIONS[:2])
    clock.advance(10 * DAY)
    await backend.touch_steps(["group"])
    await backend.prune(dead_letter_age=None, step_age=DAY)
    # the stale step's subscription is gone; the step still served keeps its own
    change = await put(state, "orders", "g1", "i1", b"1")
    assert [(step, delivery_id) for step, delivery_id, _ in await delivered(state)] == [
        ("group", f"stream:{change.position}:group")
    ]
    assert await backend.pending("any") == 0
