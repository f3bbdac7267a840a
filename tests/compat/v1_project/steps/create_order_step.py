# motia-py 1.0.x style: module-level `logger` and `enqueue`, generic types, QueryParam, include_files.
import json
from pathlib import Path
from typing import Any

from motia import ApiRequest, ApiResponse, FlowContext, QueryParam, enqueue, http, logger

config = {
    "name": "CreateOrder",
    "description": "Place an order",
    "flows": ["orders"],
    "triggers": [
        http(
            "POST",
            "/orders",
            query_params=[QueryParam(name="coupon", description="A discount code"), "note"],
        )
    ],
    "enqueues": ["order.placed"],
    "include_files": ["data/prices.json"],
}

PRICES = json.loads((Path(__file__).parent / "data" / "prices.json").read_text())


async def handler(request: ApiRequest[dict[str, Any]], ctx: FlowContext[Any]) -> ApiResponse[Any]:
    body = request.body or {}
    order = {"id": body["id"], "item": body["item"], "price": PRICES[body["item"]]}
    logger.info("Order placed", {"orderId": order["id"]})
    await ctx.state.set("orders", order["id"], order)
    await enqueue({"topic": "order.placed", "data": order})
    return ApiResponse(status=201, body={**order, "traceId": ctx.trace_id})
