"""DELETE /session/:sessionId: remove a session (the docs' "Delete" example; decorator style)."""

from motia import http, step


@step(
    {
        "name": "delete-session",
        "description": "Delete a session and return whether it existed",
        "flows": ["sessions"],
        "triggers": [http("DELETE", "/session/{sessionId}")],
    }
)
async def delete_session(input, ctx):
    session_id = input.request.path_params["sessionId"]
    deleted = await ctx.state.delete("user-sessions", session_id)
    if not deleted:
        return {"status": 404, "body": {"error": "Session not found"}}
    ctx.logger.info("Session deleted", extra={"sessionId": session_id, "userId": deleted["userId"]})
    return {"status": 200, "body": {"deleted": True}}
