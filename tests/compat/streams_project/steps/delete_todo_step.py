"""DELETE /todo/:group/:id: remove an item."""

from motia import http

config = {"name": "delete-todo", "triggers": [http("DELETE", "/todo/:group/:id")]}


async def handler(request, ctx):
    group, item = request.path_params["group"], request.path_params["id"]
    return {"status": 200, "body": {"old": await ctx.streams.todo.delete(group, item)}}
