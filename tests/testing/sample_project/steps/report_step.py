from motia import cron, step


async def report(input, ctx):
    held = await ctx.state.count("reservations")
    await ctx.state.set("reports", input.scheduled_at.strftime("%H:%M"), {"held": held})


report_step = step({"name": "report", "triggers": [cron("*/5 * * * *")]}, report)
