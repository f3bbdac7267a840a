# The 1.0 release candidates: an event handler writing through ctx.state.
from motia import queue

config = {"name": "RememberBump", "triggers": [queue("counter.bumped")]}


async def handler(input, ctx):
    groups = await ctx.state.list_groups()
    await ctx.state.set("bumps", input["name"], {**input, "groupsSeen": sorted(groups)})
