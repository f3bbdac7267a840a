"""POST /todo/:group/events: an ephemeral event (body ``{"type", "data", "id"?}``) to the group or one item."""

from motia import http

config = {"name": "send-todo-event", "triggers": [http("POST", "/todo/:group/events")]}


async def handler(request, ctx):
    body = request.body
    channel = {"groupId": request.path_params["group"]}
    if body.get("id"):
        channel["id"] = body["id"]
    await ctx.streams.todo.send(channel, {"type": body["type"], "data": body.get("data")})
    return {"status": 202, "body": {"sent": True}}
