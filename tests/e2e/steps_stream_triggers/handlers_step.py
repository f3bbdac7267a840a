"""Test-only steps: write a stream item over HTTP, read any state key, and a stream trigger whose handler,
with MOTIA_TEST_HANG=1, records that it started and never finishes (a handler to kill the process under);
otherwise it records its effect, counting its runs per change."""

import asyncio
import os

from motia import http, step, stream


@step({"name": "put-todo", "triggers": [http("PUT", "/todo/:group/:id")]})
async def put_todo(input, ctx):
    await ctx.streams.todo.set(input.path_params["group"], input.path_params["id"], input.body)
    return {"status": 204}


@step({"name": "read", "triggers": [http("GET", "/state/:scope/:key")]})
async def read(input, ctx):
    return {"status": 200, "body": {"value": await ctx.state.get(input.path_params["scope"], input.path_params["key"])}}


@step({"name": "on-todo", "triggers": [stream("todo")]})
async def on_todo(input, ctx):
    key = f"{input.group_id}-{input.item_id}-{input.seq}"
    await ctx.state.set("started", key, {"attempt": ctx.trigger.attempt, "pid": os.getpid()})
    if os.environ.get("MOTIA_TEST_HANG") == "1":
        await asyncio.Event().wait()
    await ctx.state.update(
        "effects",
        key,
        [
            {"type": "increment", "path": "runs", "value": 1},
            {"type": "set", "path": "event_type", "value": input.event_type},
            {"type": "set", "path": "data", "value": input.data},
            {"type": "set", "path": "attempt", "value": ctx.trigger.attempt},
        ],
    )
