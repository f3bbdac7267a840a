"""GET /sessions: every session, with the active ones (the docs' "List" example; module style)."""

from time import time

from motia import http

config = {
    "name": "list-sessions",
    "description": "List sessions and count the active ones",
    "flows": ["sessions"],
    "triggers": [http("GET", "/sessions")],
}


async def handler(input, ctx):
    sessions = await ctx.state.list("user-sessions")
    # Filter expired sessions
    now = int(time() * 1000)
    active = [s for s in sessions if s.get("expiresAt", 0) > now]
    return {"status": 200, "body": {"total": len(sessions), "active": len(active), "sessions": active}}
