"""Serve a ``MotiaApp`` with uvicorn on a free loopback port inside the test's event loop, so a test can
write through ``app.streams`` and watch real sockets receive it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from starlette.types import ASGIApp

from motia.runtime.app import MotiaApp
from tests.polling import eventually


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its own signal handlers
        yield


@contextlib.asynccontextmanager
async def serving(app: MotiaApp, *, port: int = 0, asgi: ASGIApp | None = None) -> AsyncIterator[int]:
    """Serve ``app.asgi`` (its lifespan starts and stops the app) and yield the port; ``port`` reuses
    one (a restarted server at the same address); ``asgi`` serves another composition of ``app`` (with the
    console's routes, say)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    served = app.asgi if asgi is None else asgi
    config = uvicorn.Config(served, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=2)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done(), what="uvicorn serving")
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()
