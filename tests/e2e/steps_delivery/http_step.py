"""Test-only HTTP steps: write items, enqueue jobs, read any key."""

from motia import http, step


@step({"name": "put-item", "triggers": [http("POST", "/items/:id")]})
async def put_item(input, ctx):
    await ctx.state.set("items", input.path_params["id"], input.body)
    return {"status": 204}


@step({"name": "post-jobs", "triggers": [http("POST", "/jobs")], "enqueues": ["jobs"]})
async def post_jobs(input, ctx):
    for job_id in input.body["ids"]:
        await ctx.enqueue({"topic": "jobs", "data": {"id": job_id}})
    return {"status": 202}


@step({"name": "read", "triggers": [http("GET", "/state/:scope/:key")]})
async def read(input, ctx):
    return {"status": 200, "body": {"value": await ctx.state.get(input.path_params["scope"], input.path_params["key"])}}


@step({"name": "count", "triggers": [http("GET", "/count/:scope")]})
async def count(input, ctx):
    return {"status": 200, "body": {"count": await ctx.state.count(input.path_params["scope"])}}
