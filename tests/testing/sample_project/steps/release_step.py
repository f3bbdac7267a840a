from motia import state, step


def expired(event, ctx):
    return event.event_type == "expired"


async def release(event, ctx):
    await ctx.state.set("released", event.item_id, {"seat": event.item_id})


release_step = step({"name": "release", "triggers": [state(scope="reservations", condition=expired)]}, release)
