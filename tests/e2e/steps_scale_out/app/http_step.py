"""Test-only HTTP steps of the scale-out app: write and read state, count concurrently, enqueue messages."""

from motia import http, step


@step({"name": "put-value", "triggers": [http("PUT", "/kv/:scope/:key")]})
async def put_value(input, ctx):
    result = await ctx.state.set(input.path_params["scope"], input.path_params["key"], input.body)
    return {"status": 200, "body": {"version": result.version}}


@step({"name": "get-value", "triggers": [http("GET", "/kv/:scope/:key")]})
async def get_value(input, ctx):
    entry = await ctx.state.get_entry(input.path_params["scope"], input.path_params["key"])
    if entry is None:
        return {"status": 404, "body": {"error": "no such key"}}
    return {"status": 200, "body": {"value": entry.value, "version": entry.version}}


@step({"name": "increment", "triggers": [http("POST", "/counters/:key")]})
async def increment(input, ctx):
    await ctx.state.update("counters", input.path_params["key"], [{"type": "increment", "path": "n", "value": 1}])
    return {"status": 204}


@step({"name": "post-messages", "triggers": [http("POST", "/messages")], "enqueues": ["messages"]})
async def post_messages(input, ctx):
    for message_id in input.body["ids"]:
        await ctx.enqueue({"topic": "messages", "data": {"id": message_id}})
    return {"status": 202}


@step({"name": "put-item", "triggers": [http("POST", "/items/:id")]})
async def put_item(input, ctx):
    await ctx.state.set("items", input.path_params["id"], input.body)
    return {"status": 204}
