"""Test-only step: a per-second cron whose runs take 2.5 s; each run records when it started and ended."""

import asyncio
import os
import time

from motia import cron, step


@step({"name": "slow-job", "triggers": [cron("* * * * * *")]})
async def slow_job(input, ctx):
    run = input.scheduled_at.isoformat()
    # Start and end are written separately, so a run cut short by the test's stop still shows it began.
    await ctx.state.set("runs", run, {"start": time.time(), "pid": os.getpid()})
    await asyncio.sleep(2.5)
    await ctx.state.update("runs", run, [{"type": "set", "path": "end", "value": time.time()}])
