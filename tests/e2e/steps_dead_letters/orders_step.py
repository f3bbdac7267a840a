"""Steps for the dead-letter e2e test: an HTTP step enqueueing orders to a billing step that fails while
``$DL_FIXED`` (a file) is absent, with one retry; each run appends a JSON line to ``$DL_RUNS``; an audit
message goes to a topic nobody subscribes to (kept as a dead letter of "(no subscriber)")."""

import json
import os
from pathlib import Path

from motia import http, queue, step


def record(line: dict[str, object]) -> None:
    with open(os.environ["DL_RUNS"], "a") as runs:
        runs.write(json.dumps(line) + "\n")


@step({"name": "place-order", "triggers": [http("POST", "/orders")], "enqueues": ["orders.placed", "orders.audit"]})
async def place_order(input, ctx):
    await ctx.enqueue({"topic": "orders.placed", "data": input.body})
    if input.body.get("audit"):
        await ctx.enqueue({"topic": "orders.audit", "data": {"order": input.body["id"]}})
    return {"status": 202, "body": {"trace": ctx.trace_id}}


@step({"name": "bill", "triggers": [queue("orders.placed", config={"max_retries": 1, "backoff": 0.05})]})
async def bill(input, ctx):
    fixed = Path(os.environ["DL_FIXED"]).exists()
    attempt = ctx.trigger.attempt
    record(
        {
            "order": input["id"],
            "ok": fixed,
            "attempt": attempt,
            "delivery": ctx.trigger.delivery_id,
            "trace": ctx.trace_id,
        }
    )
    if not fixed:
        raise ValueError(f"card declined for order {input['id']} (attempt {attempt})")
