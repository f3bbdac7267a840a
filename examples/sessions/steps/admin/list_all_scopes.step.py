"""GET /admin/scopes: every scope that holds data (the docs' "List groups" example; *.step.py naming)."""

from motia import http

config = {
    "name": "list-all-scopes",
    "description": "List every state scope",
    "flows": ["admin"],
    "triggers": [http("GET", "/admin/scopes")],
}


async def handler(input, ctx):
    groups = await ctx.state.list_groups()
    return {"status": 200, "body": {"scopes": groups}}
