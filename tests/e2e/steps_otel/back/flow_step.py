"""The back instance of the cross-process trace test: a state trigger that enqueues, a queue step."""

from motia import queue, state, step


async def on_order(event, ctx):
    await ctx.enqueue({"topic": "order.placed", "data": {"id": event.item_id}})


async def ship(data, ctx):
    await ctx.state.set("shipped", data["id"], {"trace": ctx.trace_id})


on_order_step = step({"name": "on-order", "triggers": [state(scope="orders")], "enqueues": ["order.placed"]}, on_order)
ship_step = step({"name": "ship", "triggers": [queue("order.placed")]}, ship)
