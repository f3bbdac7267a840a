"""POST /todo/:group/:id/burst: ``count`` sets of one item back to back, as fast as the store allows.

Returns the wall-clock millisecond at which each write returned, so the test can show that some of them
shared a millisecond (Motia's clients drop a message whose timestamp is not newer than the last one).
"""

import time

from motia import http

config = {"name": "burst-todo", "triggers": [http("POST", "/todo/:group/:id/burst")]}


async def handler(request, ctx):
    group, item = request.path_params["group"], request.path_params["id"]
    stamps = []
    for n in range(int(request.body["count"])):
        await ctx.streams.todo.set(group, item, {"title": f"burst {n}"})
        stamps.append(time.time_ns() // 1_000_000)
    return {"status": 200, "body": {"ms": stamps}}
