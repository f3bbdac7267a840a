# motia-py 1.0.x multi_trigger_step: one step, four trigger types, a handler each.
from typing import Any

from motia import FlowContext, api, cron, multi_trigger_step, queue, state


async def on_placed(data: dict[str, Any], ctx: FlowContext[Any]) -> None:
    await ctx.state.update("orders", data["id"], [{"type": "set", "path": "status", "value": "confirmed"}])


async def on_lookup(request: Any, ctx: FlowContext[Any]) -> dict[str, Any]:
    order = await ctx.state.get("orders", request.path_params["id"])
    if order is None:
        return {"status": 404, "body": {"error": "not found"}}
    return {"status": 200, "body": order}


async def on_tick(ctx: FlowContext[Any]) -> None:
    ticks = await ctx.state.get("lifecycle", "ticks") or 0
    await ctx.state.set("lifecycle", "ticks", ticks + 1)


async def on_change(change: Any, ctx: FlowContext[Any]) -> None:
    await ctx.state.set(
        "order-audit", change.key, {"event": change.event_type, "status": (change.new_value or {}).get("status")}
    )


default = (
    multi_trigger_step(
        {
            "name": "OrderLifecycle",
            "triggers": [
                queue("order.placed"),
                api("GET", "/orders/{id}"),
                cron("* * * * * * *"),
                state(scope="orders"),
            ],
        }
    )
    .on_queue(on_placed)
    .on_http(on_lookup)
    .on_cron(on_tick)
    .handlers({"state": on_change})
)
