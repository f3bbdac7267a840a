"""Test-only steps: a slow request (for graceful shutdown) and a way to see that it has started."""

import asyncio

from motia import http, step


@step({"name": "slow", "triggers": [http("GET", "/slow")]})
async def slow(input, ctx):
    await ctx.state.set("e2e", "slow-started", True)
    await asyncio.sleep(int(input.query_params.get("ms", "1000")) / 1000)
    return {"status": 200, "body": {"finished": True}}


@step({"name": "slow-started", "triggers": [http("GET", "/slow/started")]})
async def slow_started(input, ctx):
    return {"status": 200, "body": {"started": bool(await ctx.state.get("e2e", "slow-started"))}}
