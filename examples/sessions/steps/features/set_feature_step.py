"""PUT /feature/:featureName: store a feature flag (not in the docs, which never show how flags get in).

A one-argument ``def`` handler using the module-level ``motia.stateManager``: inside ``motia run``
it is bound to the app's store, so it sees the same data as ``ctx.state``.
"""

from motia import http, stateManager

FLAG_SCHEMA = {
    "type": "object",
    "properties": {
        "enabled": {"type": "boolean"},
        "rolloutPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    },
    "required": ["enabled"],
    "additionalProperties": False,
}

config = {
    "name": "set-feature",
    "description": "Create or replace a feature flag",
    "flows": ["features"],
    "triggers": [http("PUT", "/feature/:featureName", body_schema=FLAG_SCHEMA)],
}


def handler(input):
    name = input.request.path_params["featureName"]
    flag = {"enabled": input.request.body["enabled"], "rolloutPercent": input.request.body.get("rolloutPercent", 100)}
    stateManager.set("feature-flags", name, flag)
    return {"status": 200, "body": flag}
