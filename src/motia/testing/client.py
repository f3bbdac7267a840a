"""Driving an app in-process: startup, an httpx client over its ASGI app, shutdown; waiting for its deliveries."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions
from motia.state.manager import StateManager
from motia.steps.definition import Step
from motia.streams.config import StreamConfig, StreamDefinition
from motia.streams.stream import Stream
from motia.testing.clock import FakeClock
from motia.testing.handlers import stream_definition

__all__ = ["AppClient", "app_client", "drain", "load_project"]


class AppClient(httpx.AsyncClient):
    """An httpx client wired to an app in-process; ``app`` is the ``MotiaApp`` and ``state`` its store."""

    app: MotiaApp

    @property
    def state(self) -> StateManager:
        return self.app.state


def load_project(steps: str | os.PathLike[str]) -> tuple[list[Step], list[StreamDefinition]]:
    """The steps of a steps directory and its streams (stream files, ``Stream`` objects of its step files)."""
    from motia.steps.loader import load_steps
    from motia.steps.stream_files import load_streams

    loaded = load_steps(steps)
    return [ls.step for ls in loaded], load_streams(steps, loaded)


@contextlib.asynccontextmanager
async def app_client(
    steps: str | os.PathLike[str] | Iterable[Step],
    *,
    state: StateManager | str = "memory://",
    cron: bool = False,
    delivery: bool | DeliveryOptions = True,
    base_url: str = "http://testserver",
    streams: Iterable[Stream[Any] | StreamConfig | StreamDefinition] = (),
    dev: bool = False,
    clock: FakeClock | None = None,
) -> AsyncIterator[AppClient]:
    """Start an app over ``steps`` (a steps directory, or ``Step`` objects) and yield a client for it.

    Startup and shutdown run around the block; cron schedules are off unless ``cron=True``; queue and
    state triggers run (``await drain(client)`` waits for them) unless ``delivery=False``; pass
    ``DeliveryOptions`` to tune them. A steps directory brings its streams (stream files, ``Stream``
    objects of its step files); ``streams`` declares more (``Stream`` objects, configs or definitions).
    ``dev=True`` runs the app in development mode (responses checked against ``response_schema``).

    With a :class:`~motia.testing.FakeClock`, the app runs on it: a state URL is opened with it as its
    clock (a ``StateManager`` you pass should have been opened with it too), the clock drives the app
    (``await clock.advance(...)`` runs what comes due; with ``cron=True`` its cron ticks too), and the
    app's own timers (cron scheduler, expiry sweeper) stay off.
    """
    definitions = [stream_definition(declared) for declared in streams]
    if isinstance(steps, str | os.PathLike):
        step_list, found = load_project(steps)
        definitions = [*found, *definitions]
    else:
        step_list = list(steps)
    opened: StateManager | None = None
    if clock is not None and isinstance(state, str):
        state = opened = StateManager.from_url(state, clock=clock)
    try:
        timers: dict[str, Any] = {} if clock is None else {"cron": False, "sweep_interval": 0}
        app = MotiaApp(
            step_list, state=state, delivery=delivery, streams=definitions, dev=dev, **{"cron": cron, **timers}
        )
        await app.startup()
        try:
            if clock is not None:
                clock.drive(app, cron=cron)
            transport = httpx.ASGITransport(app=app.asgi)
            async with AppClient(transport=transport, base_url=base_url) as client:
                client.app = app
                yield client
        finally:
            if clock is not None:
                clock.release(app)
            await app.shutdown()
    finally:
        if opened is not None:
            await opened.aclose()


async def drain(app: MotiaApp | AppClient, timeout: float = 10.0) -> None:
    """Wait until every state event and queued message of the app has been handled or dead-lettered."""
    await (app.app if isinstance(app, AppClient) else app).drain(timeout)
