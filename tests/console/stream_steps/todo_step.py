"""HTTP steps that write the todo stream through the app (``ctx.streams``): the console's browser test
watches their changes arrive in the Streams view."""

from motia import http, step


@step({"name": "put-todo", "triggers": [http("PUT", "/todo/:group/:id")]})
async def put_todo(input, ctx):
    result = await ctx.streams.todo.set(input.path_params["group"], input.path_params["id"], input.body)
    return {"status": 200, "body": result.new_value}


@step({"name": "delete-todo", "triggers": [http("DELETE", "/todo/:group/:id")]})
async def delete_todo(input, ctx):
    old = await ctx.streams.todo.delete(input.path_params["group"], input.path_params["id"])
    return {"status": 200 if old is not None else 404, "body": {"deleted": old}}


@step({"name": "todo-event", "triggers": [http("POST", "/todo/:group/events")]})
def todo_event(input, ctx):
    ctx.streams.todo.send({"groupId": input.path_params["group"]}, input.body)
    return {"status": 202, "body": {"sent": True}}
