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
from motia.testing.handlers import stream_definition

__all__ = ["AppClient", "app_client", "drain"]


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
    delivery: bool | DeliveryOptions = True,
    base_url: str = "http://testserver",
    streams: Iterable[Stream[Any] | StreamConfig | StreamDefinition] = (),
    dev: bool = False,
) -> AsyncIterator[AppClient]:
    """Start an app over ``steps`` (a steps directory, or ``Step`` objects) and yield a client for it.

    Startup and shutdown run around the block; cron schedules are off unless ``cron=True``; queue and
    state triggers run (``await drain(client)`` waits for them) unless ``delivery=False``; pass
    ``DeliveryOptions`` to tune them. A steps directory brings its streams (stream files, ``Stream``
    objects of its step files); ``streams`` declares more (``Stream`` objects, configs or definitions).
    ``dev=True`` runs the app in development mode (responses checked against ``response_schema``).
    """
    definitions = [stream_definition(declared) for declared in streams]
    if isinstance(steps, str | os.PathLike):
        from motia.steps.loader import load_steps
        from motia.steps.stream_files import load_streams

        loaded = load_steps(steps)
        step_list = [ls.step for ls in loaded]
        definitions = [*load_streams(steps, loaded), *definitions]
    else:
        step_list = list(steps)
    app = MotiaApp(step_list, state=state, cron=cron, delivery=delivery, streams=definitions, dev=dev)
    await app.startup()
    try:
        transport = httpx.ASGITransport(app=app.asgi)
        async with AppClient(transport=transport, base_url=base_url) as client:
            client.app = app
            yield client
    finally:
        await app.shutdown()


async def drain(app: MotiaApp | AppClient, timeout: float = 10.0) -> None:
    """Wait until every state event and queued message of the app has been handled or dead-lettered."""
    await (app.app if isinstance(app, AppClient) else app).drain(timeout)
