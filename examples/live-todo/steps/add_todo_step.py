"""POST /lists/:list/todos ``{"title": ...}``: add a todo; every open page of that list shows it."""

import os
import time

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
    # ids that sort in the order todos were added: a sync lists a group's items in id order, so a page
    # opened later shows the list in the same order as one that watched it grow
    todo_id = f"{time.time_ns():016x}{os.urandom(2).hex()}"
    result = await ctx.streams.todo.set(request.path_params["list"], todo_id, {"title": request.body["title"]})
    return {"status": 201, "body": result.new_value}
