"""PATCH /todo/:group/:id: update operations on an item (body: the list of ops)."""

from motia import http

config = {"name": "update-todo", "triggers": [http("PATCH", "/todo/:group/:id")]}


async def handler(request, ctx):
    group, item = request.path_params["group"], request.path_params["id"]
    result = await ctx.streams.todo.update(group, item, request.body)
    return {"status": 200, "body": {"new": result.new_value}}
