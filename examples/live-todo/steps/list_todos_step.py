"""GET /lists/:list/todos: the list's todos (for scripts and curl; the page gets them live)."""

from motia import http

config = {
    "name": "list-todos",
    "description": "The todos of a list",
    "flows": ["live-todo"],
    "triggers": [http("GET", "/lists/:list/todos")],
}


async def handler(request, ctx):
    return {"status": 200, "body": await ctx.streams.todo.get_group(request.path_params["list"])}
