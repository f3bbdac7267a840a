"""POST /session: create a session (the docs' "Set" example; builder style, JSON Schema body)."""

import secrets
from time import time

from motia import http, step

# The docs read input.request.body["userId"] unchecked, so a request without it would be a 500;
# with a body_schema it is a 400 that says which field is missing.
BODY_SCHEMA = {
    "type": "object",
    "properties": {"userId": {"type": "string", "minLength": 1}},
    "required": ["userId"],
}


def generate_session_id() -> str:
    return secrets.token_urlsafe(16)


async def handler(input, ctx):
    user_id = input.request.body["userId"]
    session_id = generate_session_id()
    expires_at = int(time() * 1000) + 3600000  # 1 hour
    await ctx.state.set(
        "user-sessions",
        session_id,
        {"userId": user_id, "expiresAt": expires_at, "createdAt": int(time() * 1000), "data": {}},
    )
    return {"status": 201, "body": {"sessionId": session_id, "expiresAt": expires_at}}


default = step(
    {
        "name": "create-session",
        "description": "Create a session for a user",
        "flows": ["sessions"],
        "triggers": [http("POST", "/session", body_schema=BODY_SCHEMA)],
    },
    handler,
)
