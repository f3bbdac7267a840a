"""Test-only queue and state-trigger steps of the scale-out app; two of each subscribe to the same thing.

Each handler counts its runs per message (or per state event) in a scope of its own and notes which
process ran it. With MOTIA_TEST_HANG=1 the queue handlers record that they started and never finish
(work held by a process about to be killed).
"""

import asyncio
import os

from motia import queue, state, step


async def record(ctx, scope: str, key: str) -> None:
    await ctx.state.update(
        scope,
        key,
        [
            {"type": "increment", "path": "runs", "value": 1},
            {"type": "append", "path": "pids", "value": os.getpid()},
            {"type": "append", "path": "attempts", "value": ctx.trigger.attempt},
        ],
    )


async def handle_message(input, ctx, step_name: str) -> None:
    if os.environ.get("MOTIA_TEST_HANG") == "1":
        await record(ctx, f"started-{step_name}", input["id"])
        await asyncio.Event().wait()
    await record(ctx, f"handled-{step_name}", input["id"])


@step({"name": "message-a", "triggers": [queue("messages")]})
async def message_a(input, ctx):
    await handle_message(input, ctx, "message-a")


@step({"name": "message-b", "triggers": [queue("messages")]})
async def message_b(input, ctx):
    await handle_message(input, ctx, "message-b")


@step({"name": "item-a", "triggers": [state(scope="items")]})
async def item_a(input, ctx):
    await record(ctx, "seen-item-a", f"{input.key}@{input.version}")


@step({"name": "item-b", "triggers": [state(scope="items")]})
async def item_b(input, ctx):
    await record(ctx, "seen-item-b", f"{input.key}@{input.version}")
