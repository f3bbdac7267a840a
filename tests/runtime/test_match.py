"""``ctx.match``, ``ctx.get_data()``, ``ctx.input_value`` (motia-py 1.0): one handler per trigger type, in
``async def`` and ``def`` handlers, with sync and async branches; clear errors for unknown keys and no match."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from motia import MatchError, MotiaError, http, queue, state, step
from motia.runtime.context import FlowContext, StepLogger
from motia.runtime.types import ApiRequest, CronInput, TriggerInfo
from motia.testing import app_client, drain


def ctx_for(kind: str, input_value: Any = None) -> FlowContext:
    return FlowContext(
        state=None,
        logger=StepLogger("s", "t"),
        trace_id="t",
        trigger=TriggerInfo(type=kind),
        step="s",
        input_value=input_value,
    )


@pytest.mark.parametrize("key", ["http", "api"])
async def test_http_gets_the_request_under_either_key(key: str) -> None:
    request = ApiRequest(method="POST", body={"a": 1})
    ctx = ctx_for("http", request)
    assert await ctx.match({key: lambda req: req.body, "default": lambda _: "default"}) == {"a": 1}
    assert ctx.get_data() == {"a": 1}


async def test_cron_gets_nothing_and_no_data() -> None:
    ctx = ctx_for("cron", CronInput(expression="* * * * *", scheduled_at=None))  # type: ignore[arg-type]

    async def on_cron() -> str:
        return "ticked"

    assert await ctx.match({"cron": on_cron, "queue": lambda data: data}) == "ticked"
    assert ctx.get_data() is None
    # default gets the input even for cron (motia-py's shape)
    assert await ctx.match({"default": lambda value: value}) is ctx.input_value


@pytest.mark.parametrize("kind", ["queue", "state", "stream"])
async def test_queue_state_stream_get_the_input(kind: str) -> None:
    ctx = ctx_for(kind, {"n": 7})
    assert await ctx.match({kind: lambda value: value["n"] * 2}) == 14
    assert await ctx.match({"default": lambda value: ("default", value)}) == ("default", {"n": 7})
    assert ctx.get_data() == {"n": 7}


async def test_no_match_and_unknown_keys_are_clear_errors() -> None:
    ctx = ctx_for("queue", 1)
    with pytest.raises(
        MatchError, match=r"no handler for trigger type 'queue' and no 'default' \(handlers given: 'http', 'cron'\)"
    ):
        await ctx.match({"http": lambda r: r, "cron": lambda: None})
    with pytest.raises(MatchError, match=r"unknown key\(s\) 'event', 'queues': expected http, api, queue"):
        ctx.match({"queues": lambda m: m, "event": lambda m: m})
    with pytest.raises(MatchError, match=r"the 'queue' handler must be a function, not int"):
        ctx.match({"queue": 3})  # type: ignore[dict-item]
    with pytest.raises(MatchError, match="takes a dict of handlers"):
        ctx.match([("queue", print)])  # type: ignore[arg-type]
    error = MatchError("x")
    assert isinstance(error, MotiaError) and isinstance(error, RuntimeError)


def test_in_sync_code_match_blocks_and_runs_async_branches() -> None:
    # Without a running loop (a def handler's thread, no app): a sync branch runs in place, an async one
    # on a fresh loop, and the result comes back directly
    ctx = ctx_for("state", 5)

    async def double(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    assert ctx.match({"state": double}) == 10
    assert ctx.match({"state": lambda value: value + 1}) == 6


def multi(kind: str, seen: list[tuple[str, Any, str]]):
    """A step on HTTP, a queue and state changes whose ``kind`` handler (``async``/``def``) dispatches with
    ``ctx.match``; branches are sync or async, and the async ones of the ``def`` handler must run on the
    app's loop thread."""

    async def on_queue(data: Any) -> None:
        seen.append(("queue", data, threading.current_thread().name))

    def on_state(change: Any) -> None:
        seen.append(("state", change.new_value, threading.current_thread().name))

    async def on_http(request: ApiRequest) -> dict[str, Any]:
        return {"status": 200, "body": {"got": request.body, "data": "?"}}

    if kind == "async":

        async def handler(input: Any, ctx: Any) -> Any:
            assert ctx.input_value is input
            if ctx.is_api():
                response = await ctx.match({"api": on_http})
                response["body"]["data"] = ctx.get_data()
                await ctx.enqueue({"topic": "jobs", "data": ctx.get_data()})
                return response
            return await ctx.match({"queue": on_queue, "default": on_state})

    else:

        def handler(input: Any, ctx: Any) -> Any:  # type: ignore[misc]
            assert ctx.input_value is input
            if ctx.is_api():
                response = ctx.match({"http": on_http})
                response["body"]["data"] = ctx.get_data()
                ctx.state.set("orders", "o1", ctx.get_data())
                ctx.enqueue({"topic": "jobs", "data": ctx.get_data()})
                return response
            return ctx.match({"queue": on_queue, "default": on_state})

    config = {
        "name": f"multi-{kind}",
        "triggers": [http("POST", "/orders"), queue("jobs"), state(scope="orders")],
        "enqueues": ["jobs"],
    }
    return step(config, handler)


@pytest.mark.parametrize("kind", ["async", "def"])
async def test_match_in_a_running_app(state_url: str, kind: str) -> None:
    seen: list[tuple[str, Any, str]] = []
    async with app_client([multi(kind, seen)], state=state_url) as client:
        if kind == "async":
            await client.state.set("orders", "o1", {"id": "o1"})
        response = await client.post("/orders", json={"id": "o1"})
        await drain(client)
    assert response.status_code == 200
    assert response.json() == {"got": {"id": "o1"}, "data": {"id": "o1"}}
    assert sorted((what, data) for what, data, _ in seen) == [("queue", {"id": "o1"}), ("state", {"id": "o1"})]
    if kind == "def":
        # the sync state branch ran in the handler's worker thread, the async queue branch on the app's loop
        threads = {what: name for what, _, name in seen}
        assert threads["state"].startswith("motia-handler")
        assert not threads["queue"].startswith("motia-handler")
