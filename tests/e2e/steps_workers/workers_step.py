"""Steps for the `motia run --workers` tests: which process answers, shared state, a per-second cron."""

import asyncio
import os

from motia import cron, http, step


async def whoami(input, ctx):
    return {"status": 200, "body": {"pid": os.getpid()}}


async def put(input, ctx):
    await ctx.state.set("shared", input.path_params["key"], {"value": input.body, "pid": os.getpid()})
    return {"status": 200, "body": {"pid": os.getpid()}}


async def get(input, ctx):
    value = await ctx.state.get("shared", input.path_params["key"])
    return {"status": 200 if value is not None else 404, "body": {"stored": value, "pid": os.getpid()}}


async def slow(input, ctx):
    """One second of work, announced in the store first so a test knows it is in flight."""
    await ctx.state.set("slow", "started", {"pid": os.getpid()})
    await asyncio.sleep(1.0)
    return {"status": 200, "body": {"pid": os.getpid(), "done": True}}


async def tick(input, ctx):
    """Counts the runs of each tick, naming the processes that ran it (an update is atomic across them)."""
    await ctx.state.update(
        "ticks",
        input.scheduled_at.isoformat(),
        [{"type": "increment", "path": "runs", "value": 1}, {"type": "append", "path": "pids", "value": os.getpid()}],
    )


whoami_step = step({"name": "whoami", "triggers": [http("GET", "/pid")]}, whoami)
put_step = step({"name": "put", "triggers": [http("PUT", "/shared/:key")]}, put)
get_step = step({"name": "get", "triggers": [http("GET", "/shared/:key")]}, get)
slow_step = step({"name": "slow", "triggers": [http("GET", "/slow")]}, slow)
tick_step = step({"name": "tick", "triggers": [cron("* * * * * *")]}, tick)
