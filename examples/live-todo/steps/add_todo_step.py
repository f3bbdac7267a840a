"""POST /lists/:list/todos ``{"title": ...}``: add a todo; every open page of that list shows it."""

import uuid

from pydantic import BaseModel, Field

from motia import http


class NewTodo(BaseModel):
    title: str = Field(min_length=1, max_length=200)


config = {
    "name": "add-todo",
    "description": "Add a todo to a list",
    "flows": ["live-todo"],
    "triggers": [http("POST", "/lists/:list/todos", body_schema=NewTodo)],
}


async def handler(request, ctx):
    todo_id = uuid.uuid4().hex[:12]
    result = await ctx.streams.todo.set(request.path_params["list"], todo_id, {"title": request.body["title"]})
    return {"status": 201, "body": result.new_value}
