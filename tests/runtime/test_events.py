"""``StateEventHub``: fan-out to subscribers across threads, bounded queues, replay, close."""

from __future__ import annotations

import asyncio
import threading

from motia.runtime.events import StateEventHub
from motia.state import values
from motia.state.backends._events import state_event_payload


async def test_subscribers_get_events_published_after_they_subscribed():
    hub = StateEventHub()
    hub.publish({"event_type": "created", "item_id": "before"})
    first, replay = hub.subscribe()
    second, _ = hub.subscribe()
    assert replay == []  # after=None: no replay

    published = hub.publish({"event_type": "updated", "item_id": "k"})

    assert published["id"] == 2 and "timestamp" in published
    for subscription in (first, second):
        event = await asyncio.wait_for(subscription.next(), 5)
        assert event == published
    assert hub.subscriber_count == 2
    first.close()
    assert hub.subscriber_count == 1


async def test_publish_from_another_thread_reaches_the_loop():
    hub = StateEventHub()
    subscription, _ = hub.subscribe()
    thread = threading.Thread(target=lambda: [hub.publish({"n": n}) for n in range(3)])
    thread.start()
    thread.join()
    got = [await asyncio.wait_for(subscription.next(), 5) for _ in range(3)]
    assert [event["n"] for event in got] == [0, 1, 2]  # type: ignore[index]


async def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many():
    hub = StateEventHub(max_queue=3)
    subscription, _ = hub.subscribe()
    for n in range(5):
        hub.publish({"n": n})
    first = await asyncio.wait_for(subscription.next(), 5)
    # Deliveries are scheduled on the loop: by the time the first is read, all five were pushed.
    assert first["n"] == 2 and first["missed"] == 2  # type: ignore[index]
    rest = [await asyncio.wait_for(subscription.next(), 5) for _ in range(2)]
    assert [event["n"] for event in rest] == [3, 4] and all("missed" not in event for event in rest)  # type: ignore[index, operator]


async def test_replay_returns_kept_events_after_an_id():
    hub = StateEventHub(history=3)
    for n in range(5):
        hub.publish({"n": n})
    _, replay = hub.subscribe(after=0)
    assert [event["n"] for event in replay] == [2, 3, 4]  # only the last three are kept
    _, replay = hub.subscribe(after=4)
    assert [event["id"] for event in replay] == [5]
    assert [event["n"] for event in hub.recent()] == [2, 3, 4]


async def test_close_ends_every_subscription_and_later_ones_at_once():
    hub = StateEventHub()
    subscription, _ = hub.subscribe()
    hub.publish({"n": 1})
    hub.close()
    assert [event["n"] async for event in subscription] == [1]  # queued events are still delivered
    late, _ = hub.subscribe()
    assert await asyncio.wait_for(late.next(), 5) is None
    assert hub.subscriber_count == 0


async def test_async_context_manager_unsubscribes():
    hub = StateEventHub()
    subscription, _ = hub.subscribe()
    async with subscription:
        assert hub.subscriber_count == 1
    assert hub.subscriber_count == 0
    hub.publish({"n": 1})  # nobody is listening: nothing to deliver, nothing raised
    assert await asyncio.wait_for(subscription.next(), 5) is None


def test_the_console_keeps_the_old_import_path():
    from motia.console import events

    assert events.StateEventHub is StateEventHub


async def test_record_keeps_the_history_publish_would_and_reaches_subscribers():
    """``record`` (the delivery worker's) defers the stamped copy while nobody listens: what late joiners see
    is the same as after ``publish``, ids in one sequence with publish's, and a subscriber gets it live."""
    recorded, published = StateEventHub(history=3), StateEventHub(history=3)
    events = [{"event_type": "created", "item_id": f"k{n}", "timestamp": 1.5 + n} for n in range(4)]
    for n, event in enumerate(events):
        (recorded.record if n != 2 else recorded.publish)(event)
        published.publish(event)
    assert recorded.recent() == published.recent() == [{"id": n + 1, **events[n]} for n in (1, 2, 3)]
    assert recorded.subscribe(after=2)[1] == published.subscribe(after=2)[1]

    recorded.record({"event_type": "updated", "item_id": "no-time"})  # no timestamp: stamped now, as publish
    assert recorded.recent()[-1]["id"] == 5 and isinstance(recorded.recent()[-1]["timestamp"], float)

    subscription, _ = recorded.subscribe()
    recorded.record(events[0])
    live = await asyncio.wait_for(subscription.next(), 5)
    assert live == {"id": 6, **events[0]} == recorded.recent()[-1]


async def test_record_many_keeps_what_record_would_in_order_and_reaches_subscribers():
    """``record_many`` (the worker's, once per claim) is ``record`` of each event, in order."""
    many, one_by_one = StateEventHub(history=3), StateEventHub(history=3)
    events = [{"event_type": "created", "item_id": f"k{n}", "timestamp": 1.5 + n} for n in range(4)]
    many.record_many(events)
    for event in events:
        one_by_one.record(event)
    assert many.recent() == one_by_one.recent() == [{"id": n + 1, **events[n]} for n in (1, 2, 3)]

    many.record_many([{"event_type": "updated", "item_id": "no-time"}])  # no timestamp: stamped now
    assert many.recent()[-1]["id"] == 5 and isinstance(many.recent()[-1]["timestamp"], float)

    subscription, _ = many.subscribe()
    many.record_many(events[:2])
    live = [await asyncio.wait_for(subscription.next(), 5) for _ in range(2)]
    assert live == [{"id": 6, **events[0]}, {"id": 7, **events[1]}] == many.recent()[-2:]


async def test_record_payloads_keeps_what_record_many_of_the_decoded_events_would():
    """``record_payloads`` (the worker's: state delivery payloads, decoded only when read) shows late joiners and
    subscribers the very dicts ``record_many`` of the decoded payloads would, big ints exact."""
    payloads = [
        state_event_payload(n, "updated", "s", f"k{n}", b'{"n":1}', value, n, 1.5 + n, "00-trace")
        for n, value in enumerate([b"123456789012345678901234567890", b'"\\u00e9\xf0\x9f\x98\x80"', b"0.1", b"[]"])
    ]
    decoded = [values.decode(payload) for payload in payloads]
    by_payload, by_event = StateEventHub(history=3), StateEventHub(history=3)
    by_payload.record_payloads(payloads)
    by_event.record_many(decoded)
    assert by_payload.recent() == by_event.recent() == [{"id": n + 1, **decoded[n]} for n in (1, 2, 3)]
    assert by_payload.recent()[0]["new_value"] == "\u00e9\U0001f600"

    subscription, _ = by_payload.subscribe()
    by_payload.record_payloads(payloads[:1])
    live = await asyncio.wait_for(subscription.next(), 5)
    assert live == {"id": 5, **decoded[0]} == by_payload.recent()[-1]
    assert live["new_value"] == 123456789012345678901234567890
