"""GET /session/:sessionId: read one session (the docs' "Get" example; builder style)."""

from motia import http, step


async def handler(input, ctx):
    session_id = input.request.path_params["sessionId"]
    session = await ctx.state.get("user-sessions", session_id)
    if not session:
        return {"status": 404, "body": {"error": "Session not found"}}
    return {"status": 200, "body": session}


default = step(
    {
        "name": "get-session",
        "description": "Return a session by id",
        "flows": ["sessions"],
        "triggers": [http("GET", "/session/{sessionId}")],
    },
    handler,
)
