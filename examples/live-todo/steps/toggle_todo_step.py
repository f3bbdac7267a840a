"""PATCH /lists/:list/todos/:id ``{"done": bool}``: mark a todo done or not (an atomic update)."""

from pydantic import BaseModel

from motia import http


class Done(BaseModel):
    done: bool


config = {
    "name": "toggle-todo",
    "description": "Mark a todo done or not done",
    "flows": ["live-todo"],
    "triggers": [http("PATCH", "/lists/:list/todos/:id", body_schema=Done)],
}


async def handler(request, ctx):
    group, todo_id = request.path_params["list"], request.path_params["id"]
    if await ctx.streams.todo.get(group, todo_id) is None:
        return {"status": 404, "body": {"error": f"no todo {todo_id!r} in list {group!r}"}}
    result = await ctx.streams.todo.update(
        group, todo_id, [{"type": "set", "path": "done", "value": request.body["done"]}]
    )
    return {"status": 200, "body": result.new_value}
