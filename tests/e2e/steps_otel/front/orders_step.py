"""The front instance of the cross-process trace test: an HTTP step that writes state."""

import sys

from motia import http, step


async def create(request, ctx):
    await ctx.state.set("orders", request.body["id"], {"qty": request.body["qty"]})
    return {"status": 201, "body": {"trace": ctx.trace_id}}


async def modules(request, ctx):
    # Which OpenTelemetry modules this process has imported (none when tracing is off).
    return {"status": 200, "body": sorted(name for name in sys.modules if name.startswith("opentelemetry"))}


create_order = step({"name": "create-order", "triggers": [http("POST", "/orders")]}, create)
otel_modules = step({"name": "otel-modules", "triggers": [http("GET", "/otel-modules")]}, modules)
