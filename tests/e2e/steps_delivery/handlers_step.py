"""Test-only trigger handlers. With MOTIA_TEST_HANG=1 they record that they started and never finish
(a slow handler to kill the process under); otherwise they record their effect."""

import asyncio
import os

from motia import queue, state, step


async def started(ctx, key: str) -> bool:
    """Record this attempt; return True when the handler should hang."""
    await ctx.state.set("started", key, {"attempt": ctx.trigger.attempt, "pid": os.getpid()})
    if os.environ.get("MOTIA_TEST_HANG") == "1":
        await asyncio.Event().wait()
    return False


@step({"name": "on-item", "triggers": [state(scope="items")]})
async def on_item(input, ctx):
    await started(ctx, f"item-{input.key}")
    await ctx.state.set("effects", f"item-{input.key}", {"value": input.new_value, "attempt": ctx.trigger.attempt})


@step({"name": "on-job", "triggers": [queue("jobs")]})
async def on_job(input, ctx):
    await started(ctx, f"job-{input['id']}")
    await asyncio.sleep(float(os.environ.get("MOTIA_TEST_JOB_SECONDS", "0")))  # the work itself
    await ctx.state.update(
        "effects",
        f"job-{input['id']}",
        [{"type": "increment", "path": "runs", "value": 1}, {"type": "append", "path": "pids", "value": os.getpid()}],
    )
