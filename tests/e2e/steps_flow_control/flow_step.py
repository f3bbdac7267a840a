"""Test-only steps of the flow-control e2e test (issue 18): an HTTP step that enqueues numbered messages per
key, a step allowed one handler per key at once, and a step allowed 3 starts per second.

The keyed step counts its handlers in flight per key in state (atomic updates, shared by every instance):
a start that finds another handler of its key running records an overlap, whichever instance runs it. It
also records how many handlers of any key were running at each start (keys run side by side), and the
order and instance of each key's messages. The throttled step records each start's time and attempt.
"""

import asyncio
import os
import time

from motia import enqueue, http, step


@step({"name": "post-flow", "triggers": [http("POST", "/flow")], "enqueues": ["per-key", "throttled"]})
async def post_flow(input, ctx):
    for n in input.body["numbers"]:
        for key in input.body["keys"]:
            await enqueue({"topic": input.body["topic"], "data": {"key": key, "n": n}})
    return {"status": 202}


@step(
    {
        "name": "per-key",
        "triggers": [{"type": "queue", "topic": "per-key", "config": {"concurrency": {"key": "key", "limit": 1}}}],
    }
)
async def per_key(input, ctx):
    key, n = input["key"], input["n"]
    mine = await ctx.state.update("flow-running", key, [{"type": "increment", "path": "n", "value": 1}])
    everyone = await ctx.state.update("flow-running", "(all)", [{"type": "increment", "path": "n", "value": 1}])
    if mine.new_value["n"] > 1:
        await ctx.state.set("flow-overlaps", f"{key}:{n}", {"running": mine.new_value["n"], "pid": os.getpid()})
    await ctx.state.update(
        "flow-order",
        key,
        [
            {"type": "append", "path": "numbers", "value": n},
            {"type": "append", "path": "pids", "value": os.getpid()},
            {"type": "append", "path": "running", "value": everyone.new_value["n"]},
        ],
    )
    await asyncio.sleep(0.05)  # the work: another handler of this key starting meanwhile would be an overlap
    await ctx.state.update("flow-running", "(all)", [{"type": "increment", "path": "n", "value": -1}])
    await ctx.state.update("flow-running", key, [{"type": "increment", "path": "n", "value": -1}])


@step(
    {
        "name": "throttled",
        "triggers": [
            {
                "type": "queue",
                "topic": "throttled",
                "config": {"rateLimit": {"limit": 3, "period": 1}, "maxRetries": 0},
            }
        ],
    }
)
async def throttled(input, ctx):
    await ctx.state.update(
        "flow-rate",
        "starts",
        [
            {"type": "append", "path": "times", "value": time.time()},
            {"type": "append", "path": "attempts", "value": ctx.trigger.attempt},
            {"type": "append", "path": "pids", "value": os.getpid()},
        ],
    )
