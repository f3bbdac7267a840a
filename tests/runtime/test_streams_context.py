"""``ctx.streams`` and module-level ``Stream`` objects inside a running app: async in ``async def``
handlers, blocking in ``def`` handlers, on the app's own store."""

from __future__ import annotations

import pytest

from motia import Stream, StreamConfig, StreamNotFoundError, http, step
from motia.testing import app_client, make_context

todo = Stream(StreamConfig(name="todo"))
undeclared = Stream("ghost")


@step({"name": "async-add", "triggers": [http("POST", "/async/:id")]})
async def async_add(input, ctx):
    result = await ctx.streams.todo.set("inbox", input.path_params["id"], input.body)
    await todo.update("inbox", input.path_params["id"], [{"type": "set", "path": "via", "value": "async"}])
    return {"status": 200, "body": {"old": result.old_value, "items": await ctx.streams["todo"].get_group("inbox")}}


@step({"name": "sync-add", "triggers": [http("POST", "/sync/:id")]})
def sync_add(input, ctx):
    ctx.streams.todo.set("inbox", input.path_params["id"], input.body)
    todo.update("inbox", input.path_params["id"], [{"type": "set", "path": "via", "value": "sync"}])
    return {
        "status": 200,
        "body": {"groups": todo.list_groups(), "item": ctx.streams.todo.get("inbox", input.path_params["id"])},
    }


@step({"name": "ghost", "triggers": [http("GET", "/ghost")]})
async def ghost(input, ctx):
    try:
        await undeclared.get("g", "i")
    except StreamNotFoundError as exc:
        missing = str(exc)
    return {
        "status": 200,
        "body": {"missing": missing, "has": "todo" in ctx.streams, "attr": hasattr(ctx.streams, "nope")},
    }


async def test_async_and_def_handlers_share_the_apps_streams():
    async with app_client([async_add, sync_add, ghost], streams=[todo]) as client:
        first = await client.post("/async/a", json={"title": "milk"})
        assert first.json() == {"old": None, "items": [{"title": "milk", "id": "a", "via": "async"}]}
        second = await client.post("/sync/b", json={"title": "eggs"})
        assert second.json() == {"groups": ["inbox"], "item": {"title": "eggs", "id": "b", "via": "sync"}}
        assert await client.app.streams.get_group("todo", "inbox") == [
            {"title": "milk", "id": "a", "via": "async"},
            {"title": "eggs", "id": "b", "via": "sync"},
        ]
        answer = (await client.get("/ghost")).json()
        assert "no stream named 'ghost' is declared" in answer["missing"]
        assert answer["has"] is True and answer["attr"] is False


async def test_make_context_gives_streams_on_its_state():
    ctx = make_context(streams=[todo])
    await ctx.streams.todo.set("g", "i", {"v": 1})
    assert await ctx.state.backend.stream_get("todo", "g", "i") is not None
    with pytest.raises(StreamNotFoundError):
        ctx.streams["nope"]
