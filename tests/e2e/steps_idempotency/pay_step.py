"""Test-only step of the idempotency e2e test: counts its runs in state; the project's motia_config.py
turns idempotency on for every route."""

from motia import http, step


@step({"name": "pay", "triggers": [http("POST", "/pay")]})
async def pay(input, ctx):
    result = await ctx.state.update("payments", "runs", [{"type": "increment", "path": "n", "value": 1}])
    return {"status": 201, "body": {"run": result.new_value["n"], "amount": input.body["amount"]}}
