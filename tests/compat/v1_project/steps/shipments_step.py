# motia-py 1.0.x queue config: a FIFO queue per customer (`messageGroupId`), upstream's camelCase keys, and
# an HTTP step that sends with the module-level `enqueue`.
from typing import Any

from motia import ApiRequest, ApiResponse, FlowContext, QueueConfig, enqueue, http, queue, step

request_config = {
    "name": "RequestShipments",
    "flows": ["orders"],
    "triggers": [http("POST", "/shipments")],
    "enqueues": ["shipment.requested"],
}


async def request_shipments(request: ApiRequest[dict[str, Any]], ctx: FlowContext[Any]) -> ApiResponse[Any]:
    for shipment in request.body["shipments"]:
        await enqueue({"topic": "shipment.requested", "data": shipment, "messageGroupId": shipment["customer"]})
    return ApiResponse(status=202, body={"queued": len(request.body["shipments"])})


async def ship(shipment: dict[str, Any], ctx: FlowContext[Any]) -> None:
    if shipment.get("flaky") and ctx.trigger.attempt == 1:
        raise RuntimeError("the carrier timed out")  # retried; the customer's later shipments wait for it
    await ctx.state.update(
        "shipments", shipment["customer"], [{"type": "append", "path": "sequence", "value": shipment["n"]}]
    )


requester = step(request_config, request_shipments)
shipper = step(
    {
        "name": "Ship",
        "flows": ["orders"],
        "triggers": [
            {
                "type": "queue",
                "topic": "shipment.requested",
                "config": {"type": "fifo", "maxRetries": 2, "backoffType": "fixed", "backoffDelayMs": 10},
            },
            queue("shipment.rush", config=QueueConfig(type="fifo", concurrency=2, visibility_timeout=60)),
        ],
    },
    ship,
)
