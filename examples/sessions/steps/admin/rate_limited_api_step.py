"""POST /api/action: 100 requests per user per minute (the docs' "Rate limiting" use case; decorator)."""

from time import time

from motia import http, step

WINDOW_MS = 60000  # 1 minute
LIMIT = 100


@step(
    {
        "name": "rate-limited-api",
        "description": "An action limited to 100 calls per minute per x-user-id",
        "flows": ["admin"],
        "triggers": [http("POST", "/api/action")],
    }
)
async def rate_limited_api(input, ctx):
    user_id = input.request.headers.get("x-user-id")
    if not user_id:
        return {"status": 400, "body": {"error": "x-user-id header required"}}
    scope = "rate-limits"
    # Get current rate limit
    limit = await ctx.state.get(scope, user_id)
    now = int(time() * 1000)
    if limit and limit["resetAt"] > now:
        if limit["count"] >= LIMIT:
            return {"status": 429, "body": {"error": "Rate limit exceeded"}}
        # increment is atomic, so concurrent requests inside a window are all counted
        await ctx.state.update(scope, user_id, [{"type": "increment", "path": "count", "value": 1}])
    else:
        await ctx.state.set(scope, user_id, {"count": 1, "resetAt": now + WINDOW_MS})
    # Process the request
    return {"status": 200, "body": {"success": True}}
