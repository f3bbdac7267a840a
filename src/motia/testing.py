"""Test helpers: call a handler directly with a real ``ctx``, or drive an app over in-process HTTP.

::

    from motia.testing import api_request, app_client, call_handler

    async def test_get_session():
        result = await call_handler(get_session, api_request(path_params={"sessionId": "s1"}))
        assert result["status"] == 404

    async def test_over_http():
        async with app_client("steps") as client:
            assert (await client.get("/session/s1")).status_code == 404

Stores default to ``memory://`` (fresh and private each time). Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx

from motia.runtime.app import MotiaApp, new_trace_id
from motia.runtime.context import FlowContext, StepLogger
from motia.runtime.types import ApiRequest, TriggerInfo
from motia.state.manager import StateManager
from motia.steps.definition import Step

__all__ = ["AppClient", "api_request", "app_client", "call_handler", "make_context", "memory_state"]


def memory_state(**options: Any) -> StateManager:
    """A fresh, private in-memory store (``options`` as for ``StateManager.from_url``)."""
    return StateManager.from_url("memory://", **options)


def api_request(
    method: str = "GET",
    path: str = "/",
    *,
    path_params: dict[str, str] | None = None,
    query_params: dict[str, str | list[str]] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
) -> ApiRequest:
    """The ``input`` an HTTP handler would get for such a request (header names are lower-cased)."""
    return ApiRequest(
        method=method.upper(),
        path=path,
        path_params=dict(path_params or {}),
        query_params=dict(query_params or {}),
        headers={k.lower(): v for k, v in (headers or {}).items()},
        body=body,
    )


def make_context(
    *,
    state: Any = None,
    step: str = "test",
    trigger: TriggerInfo | None = None,
    trace_id: str | None = None,
) -> FlowContext:
    """A ``ctx`` for calling an ``async def`` handler by hand; ``state`` defaults to a fresh memory store."""
    trace = trace_id or new_trace_id()
    return FlowContext(
        state=state if state is not None else memory_state(),
        logger=StepLogger(step, trace),
        trace_id=trace,
        trigger=trigger or TriggerInfo(type="http", method="GET", path="/"),
        step=step,
    )


async def call_handler(
    target: Step | Callable[..., Any],
    input: Any = None,  # noqa: A002 - the handler's own name
    *,
    state: StateManager | None = None,
    trigger: TriggerInfo | None = None,
    ctx: FlowContext | None = None,
) -> Any:
    """Call a step's handler as the runtime would: one or two arguments, ``def`` in a worker thread.

    ``def`` handlers get the blocking ``ctx.state`` and a bound ``motia.stateManager``, as under
    ``motia run``. ``state`` defaults to a fresh memory store; pass your own to inspect it afterwards.
    """
    step = target if isinstance(target, Step) else Step({"name": "test", "triggers": []}, target)
    app = MotiaApp([step], state=state if state is not None else memory_state(), cron=False)
    await app.startup()
    try:
        info = trigger or TriggerInfo(type="http", method="GET", path="/")
        return await app.invoke(step, input, ctx or app.context(step, info, new_trace_id()))
    finally:
        await app.shutdown()


class AppClient(httpx.AsyncClient):
    """An httpx client wired to an app in-process; ``app`` is the ``MotiaApp`` and ``state`` its store."""

    app: MotiaApp

    @property
    def state(self) -> StateManager:
        return self.app.state


@contextlib.asynccontextmanager
async def app_client(
    steps: str | os.PathLike[str] | Iterable[Step],
    *,
    state: StateManager | str = "memory://",
    cron: bool = False,
    base_url: str = "http://testserver",
) -> AsyncIterator[AppClient]:
    """Start an app over ``steps`` (a steps directory, or ``Step`` objects) and yield a client for it.

    Startup and shutdown run around the block; cron schedules are off unless ``cron=True``.
    """
    if isinstance(steps, str | os.PathLike):
        from motia.steps.loader import load_steps

        step_list = [ls.step for ls in load_steps(steps)]
    else:
        step_list = list(steps)
    app = MotiaApp(step_list, state=state, cron=cron)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app.asgi)
        async with AppClient(transport=transport, base_url=base_url) as client:
            client.app = app
            yield client
    finally:
        await app.shutdown()
