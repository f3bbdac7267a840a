"""Test-only steps of the FIFO scale-out test: an HTTP step that enqueues numbered messages per group, and
a FIFO queue step (upstream's config spelling) that appends each message's number to its group's list.

The handler reads its group's list before appending and records a gap (a message handled out of order, or
twice), so an overlap of two messages of one group would show even if the final list were repaired.
"""

import asyncio
import os
import random

from motia import enqueue, http, step


@step({"name": "post-jobs", "triggers": [http("POST", "/jobs")], "enqueues": ["jobs"]})
async def post_jobs(input, ctx):
    for n in input.body["numbers"]:
        for group in input.body["groups"]:
            await enqueue({"topic": "jobs", "data": {"group": group, "n": n}, "messageGroupId": group})
    return {"status": 202}


@step(
    {
        "name": "ordered",
        "triggers": [{"type": "queue", "topic": "jobs", "config": {"type": "fifo", "maxRetries": 3}}],
    }
)
async def ordered(input, ctx):
    group, n = input["group"], input["n"]
    before = await ctx.state.get("fifo", group) or {"numbers": []}
    if before["numbers"] != list(range(n)):
        await ctx.state.update("fifo-gaps", f"{group}:{n}", [{"type": "set", "path": "before", "value": before}])
    await asyncio.sleep(random.uniform(0, 0.01))  # the work; a concurrent run of the group would interleave here
    await ctx.state.update(
        "fifo",
        group,
        [
            {"type": "append", "path": "numbers", "value": n},
            {"type": "append", "path": "pids", "value": os.getpid()},
        ],
    )
