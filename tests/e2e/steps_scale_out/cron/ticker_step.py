"""Test-only step: a per-second cron that counts its runs per tick and notes which process ran each."""

import os

from motia import cron, step


@step({"name": "scale-out-ticker", "triggers": [cron("* * * * * *")]})
async def scale_out_ticker(input, ctx):
    await ctx.state.update(
        "ticks",
        input.scheduled_at.isoformat(),
        [{"type": "increment", "path": "runs", "value": 1}, {"type": "append", "path": "pids", "value": os.getpid()}],
    )
