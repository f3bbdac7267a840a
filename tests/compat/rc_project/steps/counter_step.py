# The 1.0 release candidates: `await state_manager.<op>`, `ctx.logger`, `ctx.emit`, `ctx.state`.
from motia import http, state_manager

config = {
    "name": "Bump",
    "triggers": [http("POST", "/counters/:name")],
    "enqueues": ["counter.bumped"],
}


async def handler(req, ctx):
    name = req.path_params["name"]
    current = await state_manager.get("counters", name) or {"value": 0}
    result = await state_manager.set("counters", name, {"value": current["value"] + 1})
    ctx.logger.info("Bumped", {"name": name})
    await ctx.emit({"topic": "counter.bumped", "data": {"name": name, "value": current["value"] + 1}})
    return {"status": 200, "body": {"value": result.new_value["value"]}}
