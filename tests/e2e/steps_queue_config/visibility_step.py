"""Test-only step of the queue-config e2e test: a queue step whose ``visibilityTimeout`` (1 s) is far
shorter than the worker's lease (30 s). With MOTIA_TEST_HANG=1 its handler records that it started and
never finishes (work held by a process about to be killed)."""

import asyncio
import os

from motia import http, step


@step({"name": "post-held", "triggers": [http("POST", "/held")], "enqueues": ["held"]})
async def post_held(input, ctx):
    for message_id in input.body["ids"]:
        await ctx.enqueue({"topic": "held", "data": {"id": message_id}})
    return {"status": 202}


@step({"name": "held", "triggers": [{"type": "queue", "topic": "held", "config": {"visibilityTimeout": 1}}]})
async def held(input, ctx):
    record = [
        {"type": "append", "path": "pids", "value": os.getpid()},
        {"type": "append", "path": "attempts", "value": ctx.trigger.attempt},
    ]
    if os.environ.get("MOTIA_TEST_HANG") == "1":
        await ctx.state.update("held-started", input["id"], record)
        await asyncio.Event().wait()
    await ctx.state.update("held-handled", input["id"], record)
