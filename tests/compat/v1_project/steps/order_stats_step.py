# motia-py 1.0.x: a `def` handler using the module-level `stateManager` and `logger`.
from motia import http, logger, stateManager, step


def count_orders(request, ctx):
    orders = stateManager.list("orders")
    logger.warn("Counting orders", {"count": len(orders)})
    return {"status": 200, "body": {"count": len(orders), "traceId": ctx.trace_id}}


stats = step({"name": "OrderStats", "triggers": [http("GET", "/stats")]}, count_orders)
