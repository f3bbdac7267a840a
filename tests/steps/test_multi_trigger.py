"""``multi_trigger_step``: one step, a handler per trigger type, dispatched on ``ctx.trigger.type``."""

from __future__ import annotations

from typing import Any

import pytest

from motia import ConfigError, MultiTriggerStepBuilder, Step, cron, http, multi_trigger_step, queue
from motia.runtime.types import TriggerInfo
from motia.testing import call_handler

CONFIG = {"name": "multi", "triggers": [http("POST", "/m"), queue("m"), cron("* * * * *")]}


async def test_dispatches_on_the_trigger_type_and_cron_handlers_get_ctx():
    calls: list[tuple[str, Any]] = []

    async def on_http(request: Any, ctx: Any) -> dict[str, Any]:
        calls.append(("http", request.body))
        return {"status": 200, "body": "ok"}

    async def on_queue(data: Any) -> None:  # one argument: the input
        calls.append(("queue", data))

    async def on_cron(ctx: Any) -> None:  # one argument: ctx, as upstream
        calls.append(("cron", ctx.trigger.expression))

    built = multi_trigger_step(CONFIG).on_http(on_http).handlers({"queue": on_queue, "cron": on_cron})
    assert isinstance(built, Step) and built.is_async and built.triggers == tuple(CONFIG["triggers"])

    from motia.testing import api_request

    assert await call_handler(built, api_request("POST", "/m", body={"a": 1})) == {"status": 200, "body": "ok"}
    await call_handler(built, {"n": 1}, trigger=TriggerInfo(type="queue", topic="m"))
    await call_handler(built, None, trigger=TriggerInfo(type="cron", expression="* * * * *"))
    assert calls == [("http", {"a": 1}), ("queue", {"n": 1}), ("cron", "* * * * *")]


async def test_a_trigger_type_without_handler_fails_the_run():
    built = multi_trigger_step(CONFIG).on_queue(lambda data, ctx: None).handlers()
    with pytest.raises(RuntimeError, match="no handler for a cron trigger"):
        await call_handler(built, None, trigger=TriggerInfo(type="cron", expression="* * * * *"))


async def test_def_handlers_make_a_def_step_with_blocking_state():
    def on_http(request: Any, ctx: Any) -> dict[str, Any]:
        ctx.state.set("s", "k", 1)  # blocking ctx.state: no await
        return {"status": 200, "body": ctx.state.get("s", "k")}

    built = multi_trigger_step(CONFIG).handlers({"api": on_http})  # "api" is "http"
    assert not built.is_async
    assert (await call_handler(built, None))["body"] == 1


def test_declaration_errors():
    async def a(i: Any, c: Any) -> None: ...

    def s(i: Any, c: Any) -> None: ...

    with pytest.raises(ConfigError, match="mix of `async def` and `def`"):
        multi_trigger_step(CONFIG).on_http(a).on_queue(s).handlers()
    with pytest.raises(ConfigError, match="no trigger type 'event'"):
        multi_trigger_step(CONFIG).handlers({"event": a})
    with pytest.raises(ConfigError, match="has no handler"):
        multi_trigger_step(CONFIG).handlers()
    with pytest.raises(ConfigError, match="must be callable"):
        multi_trigger_step(CONFIG).on_cron("nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown key"):
        multi_trigger_step({"name": "x", "trigers": []})
    assert "multi" in repr(MultiTriggerStepBuilder(CONFIG).on_http(a))
