# A Motia 0.x cron step: `cron` and a handler taking only `context`.
config = {
    "type": "cron",
    "name": "PetCensus",
    "cron": "* * * * * *",
    "emits": [],
    "flows": ["shelter"],
}


async def handler(context):
    pets = await context.state.list("pets")
    await context.state.set("census", "latest", {"count": len(pets), "trigger": context.trigger.type})
