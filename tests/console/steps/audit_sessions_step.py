"""A state trigger on user-sessions, added to the example app by the browser test: changes of that scope
reach the console's live feed through the delivery worker, whoever made them."""

from motia import state, step


async def audit(input, ctx):
    ctx.logger.info("session changed", {"key": input.item_id, "event": input.event_type})


default = step(
    {"name": "audit-sessions", "description": "Log every session change", "triggers": [state(scope="user-sessions")]},
    audit,
)
