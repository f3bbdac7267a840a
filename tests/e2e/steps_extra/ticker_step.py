"""Test-only steps: a per-second cron (6 fields) writing state, a 5-field cron, and a reader."""

from motia import cron, http, step


@step({"name": "ticker", "triggers": [cron("* * * * * *")]})
async def ticker(input, ctx):
    await ctx.state.update(
        "e2e",
        "ticks",
        [
            {"type": "increment", "path": "count", "value": 1},
            {"type": "append", "path": "at", "value": input.scheduled_at.isoformat()},
        ],
    )
    ctx.logger.info("tick", {"scheduledAt": input.scheduled_at.isoformat(), "isCron": ctx.is_cron()})


@step({"name": "hourly-five-field", "triggers": [cron("0 * * * *")]})
def hourly(_, ctx):
    ctx.state.set("e2e", "hourly-ran", True)


@step({"name": "ticks", "triggers": [http("GET", "/ticks")]})
async def ticks(input, ctx):
    return {"status": 200, "body": await ctx.state.get("e2e", "ticks") or {"count": 0, "at": []}}
