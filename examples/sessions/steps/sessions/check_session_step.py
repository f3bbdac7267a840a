"""GET /protected: only for a valid session (the docs' "Session management" use case; module style)."""

from time import time

from motia import http

config = {
    "name": "check-session",
    "description": "Serve protected content to holders of a live session",
    "flows": ["sessions"],
    "triggers": [http("GET", "/protected")],
}


async def handler(input, ctx):
    session_id = input.request.headers.get("x-session-id")
    if not session_id:
        return {"status": 401, "body": {"error": "No session"}}
    session = await ctx.state.get("user-sessions", session_id)
    if not session or session["expiresAt"] < int(time() * 1000):
        return {"status": 401, "body": {"error": "Invalid or expired session"}}
    # Update last activity
    await ctx.state.update(
        "user-sessions", session_id, [{"type": "set", "path": "lastActivity", "value": int(time() * 1000)}]
    )
    return {"status": 200, "body": {"userId": session["userId"], "data": "protected content"}}
