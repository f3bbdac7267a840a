# motia-py 1.0.x: one handler for several triggers, dispatched with ctx.match; ctx.get_data() reads the
# request body or the message alike. The "order.shipped" notice has no subscriber yet: it is kept as a
# dead letter, not refused.
from typing import Any

from motia import ApiRequest, ApiResponse, FlowContext, http, queue

config = {
    "name": "ShipOrder",
    "description": "Ship an order: asked over HTTP, done from the queue",
    "flows": ["orders"],
    "triggers": [http("POST", "/orders/{id}/ship"), queue("order.ship")],
    "enqueues": ["order.ship", "order.shipped"],
}


async def handler(input: Any, ctx: FlowContext[Any]) -> Any:
    async def on_request(request: ApiRequest[dict[str, Any]]) -> ApiResponse[Any]:
        carrier = (ctx.get_data() or {}).get("carrier", "post")
        await ctx.enqueue({"topic": "order.ship", "data": {"id": request.path_params["id"], "carrier": carrier}})
        return ApiResponse(status=202, body={"queued": True, "data": ctx.get_data()})

    async def on_message(shipment: dict[str, Any]) -> None:
        assert ctx.get_data() == shipment == ctx.input_value
        await ctx.state.update(
            "orders",
            shipment["id"],
            [
                {"type": "set", "path": "status", "value": "shipped"},
                {"type": "set", "path": "carrier", "value": shipment["carrier"]},
            ],
        )
        await ctx.enqueue({"topic": "order.shipped", "data": shipment})

    return await ctx.match({"http": on_request, "queue": on_message})
