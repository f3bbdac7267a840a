"""PATCH /session/:sessionId: partial update (the docs' "Update" example; step(config).handle style).

The body is checked against a pydantic model, so a missing ``pageViews`` is a 400, not a KeyError.
"""

from time import time

from pydantic import BaseModel

from motia import http, step


class SessionUpdate(BaseModel):
    pageViews: int  # noqa: N815 - the JSON field name


async def update_session(input, ctx):
    session_id = input.request.path_params["sessionId"]
    updates = input.request.body
    # Both operations apply atomically: all or nothing, no lost update under concurrency.
    await ctx.state.update(
        "user-sessions",
        session_id,
        [
            {"type": "set", "path": "data.lastActivity", "value": int(time() * 1000)},
            {"type": "set", "path": "data.pageViews", "value": updates["pageViews"]},
        ],
    )
    return {"status": 200, "body": {"updated": True}}


default = step(
    {
        "name": "update-session",
        "description": "Record activity on a session",
        "flows": ["sessions"],
        "triggers": [http("PATCH", "/session/:sessionId", body_schema=SessionUpdate)],
    }
).handle(update_session)
