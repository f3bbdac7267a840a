"""DELETE /lists/:list/todos/:id: remove a todo (404 when there is none)."""

from motia import http

config = {
    "name": "delete-todo",
    "description": "Remove a todo",
    "flows": ["live-todo"],
    "triggers": [http("DELETE", "/lists/:list/todos/:id")],
}


async def handler(request, ctx):
    group, todo_id = request.path_params["list"], request.path_params["id"]
    old = await ctx.streams.todo.delete(group, todo_id)
    if old is None:
        return {"status": 404, "body": {"error": f"no todo {todo_id!r} in list {group!r}"}}
    return {"status": 200, "body": old}
