"""Test-only steps: a failing handler and a validated body."""

from motia import http, step


@step({"name": "boom", "triggers": [http("GET", "/boom")]})
async def boom(input, ctx):
    raise RuntimeError("kaboom from a test step")


@step(
    {
        "name": "validated",
        "triggers": [
            http(
                "POST",
                "/validated",
                body_schema={"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
            )
        ],
    }
)
async def validated(input, ctx):
    return {"status": 200, "body": {"n": input.body["n"]}}
