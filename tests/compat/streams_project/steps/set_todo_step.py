"""PUT /todo/:group/:id: store an item (a create or an update for the subscribers)."""

from motia import http

config = {"name": "set-todo", "triggers": [http("PUT", "/todo/:group/:id")]}


async def handler(request, ctx):
    group, item = request.path_params["group"], request.path_params["id"]
    result = await ctx.streams.todo.set(group, item, request.body)
    return {"status": 200, "body": {"old": result.old_value, "new": result.new_value}}
