"""Steps that make dead letters for the console's browser test: an HTTP step enqueueing an order to a billing
step that always fails (no retry), and an audit message that no step subscribes to (kept as a dead letter)."""

from motia import http, queue, step


@step({"name": "place-order", "triggers": [http("POST", "/orders")], "enqueues": ["orders.placed", "orders.audit"]})
async def place_order(input, ctx):
    await ctx.enqueue({"topic": "orders.placed", "data": input.body})
    await ctx.enqueue({"topic": "orders.audit", "data": {"order": input.body["id"], "by": "shop"}})
    return {"status": 202, "body": {"trace": ctx.trace_id}}


@step({"name": "bill-order", "triggers": [queue("orders.placed", config={"max_retries": 0})]})
async def bill_order(input, ctx):
    raise ValueError(f"card declined for order {input['id']}")
