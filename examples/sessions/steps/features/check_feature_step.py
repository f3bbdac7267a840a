"""GET /feature/:featureName: is a feature on for this user? (the docs' "Feature flags" use case).

A plain ``def`` handler: it runs in a worker thread, where ``ctx.state`` is the blocking twin of the
async API (same methods, no ``await``).
"""

from motia import http, step


def simple_hash(text: str) -> int:
    """The usual JavaScript string hash (``h = h * 31 + code``, 32-bit), made non-negative."""
    h = 0
    for ch in text:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    return abs(h)


def check_feature(input, ctx):
    feature_name = input.request.path_params["featureName"]
    user_id = input.request.headers.get("x-user-id", "")
    flag = ctx.state.get("feature-flags", feature_name)
    if not flag or not flag.get("enabled"):
        return {"status": 200, "body": {"enabled": False}}
    # Check user-specific rollout
    if flag.get("rolloutPercent", 100) < 100:
        user_percent = simple_hash(user_id + feature_name) % 100
        if user_percent >= flag["rolloutPercent"]:
            return {"status": 200, "body": {"enabled": False}}
    return {"status": 200, "body": {"enabled": True}}


default = step(
    {
        "name": "check-feature",
        "description": "Evaluate a feature flag for the calling user",
        "flows": ["features"],
        "triggers": [http("GET", "/feature/:featureName")],
    },
    check_feature,
)
