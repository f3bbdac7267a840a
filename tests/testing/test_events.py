"""``record_events``/``MotiaEvents``: an app's state events and enqueued messages, with assertions that say
what was seen when they fail."""

from __future__ import annotations

import pytest

from motia import http, queue, step
from motia.runtime.delivery import DeliveryOptions
from motia.testing import FakeClock, app_client, record_events


async def _order(request, ctx):
    await ctx.state.set("orders", request.body["id"], request.body)
    await ctx.enqueue({"topic": "order.created", "data": {"id": request.body["id"]}})
    return {"status": 201, "body": {}}


async def _ship(data, ctx):
    await ctx.state.update("orders", data["id"], [{"type": "set", "path": "shipped", "value": True}])


STEPS = [
    step({"name": "order", "triggers": [http("POST", "/orders")], "enqueues": ["order.created"]}, _order),
    step({"name": "ship", "triggers": [queue("order.created")]}, _ship),
]


async def test_state_events_and_messages_are_recorded_and_asserted():
    clock = FakeClock()
    options = DeliveryOptions(poll_interval=30.0)
    async with app_client(STEPS, clock=clock, delivery=options) as client, record_events(client) as events:
        await client.post("/orders", json={"id": "o1"})
        await clock.advance(0)
        assert events.assert_enqueued("order.created", {"id": "o1"}).sender == "order"
        assert events.data("order.created") == [{"id": "o1"}]
        assert [m.topic for m in events.messages] == ["order.created"]
        created = await events.assert_event("created", scope="orders", key="o1")
        assert created.new_value == {"id": "o1"}
        await events.assert_event("updated", scope="orders", key="o1", new_value={"id": "o1", "shipped": True})
        assert [e.event_type for e in await events.collect()] == ["created", "updated"]
        await events.assert_no_event("deleted")
        with pytest.raises(AssertionError, match=r"expected no updated event for orders/\*"):
            await events.assert_no_event("updated", scope="orders")
        with pytest.raises(AssertionError, match=r"found 0; seen:\n  created orders/o1"):
            await events.assert_event("deleted", scope="orders", key="o1")
        with pytest.raises(AssertionError, match=r"expected one message order.shipped, found 0"):
            events.assert_enqueued("order.shipped")
