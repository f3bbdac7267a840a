"""Fixtures for the stream server tests: an app served by a real uvicorn on a free port, in-process,
and WebSocket clients (the ``websockets`` library) on real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from motia.runtime.app import MotiaApp
from tests.e2e.motia_proc import free_port, run_motia  # noqa: F401 - run_motia: the fixture
from tests.polling import eventually


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # the test runner keeps its signals
        yield


ServeApp = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve_app() -> AsyncIterator[ServeApp]:
    """``await serve_app(app)``: serve ``app`` (its lifespan starts and stops it) and return its
    ``ws://127.0.0.1:<port>`` base URL; stopped after the test."""
    running: list[tuple[_Server, asyncio.Task[None]]] = []

    async def serve(app: MotiaApp, **options: Any) -> str:
        port = free_port()
        config = uvicorn.Config(
            app.asgi, host="127.0.0.1", port=port, log_config=None, lifespan="on", access_log=False, **options
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        running.append((server, task))
        await eventually(lambda: server.started or task.done(), timeout=10, what="uvicorn start")
        assert server.started, task.exception() if task.done() else "not started"
        return f"ws://127.0.0.1:{port}"

    yield serve
    for server, _ in running:
        server.should_exit = True
    for _, task in running:
        await asyncio.wait_for(task, 15)


@pytest.fixture
async def ws_connect() -> AsyncIterator[Callable[..., Awaitable[ClientConnection]]]:
    """``await ws_connect(url, **options)``: a client connection, closed after the test."""
    opened: list[ClientConnection] = []

    async def open_(url: str, **options: Any) -> ClientConnection:
        options.setdefault("open_timeout", 5)
        connection = await connect(url, **options)
        opened.append(connection)
        return connection

    yield open_
    for connection in opened:
        await connection.close()


def join_frame(
    stream: str = "todo", group: str = "inbox", item: str | None = None, sub: str = "s1", since: int | None = None
) -> str:
    data: dict[str, Any] = {"streamName": stream, "groupId": group, "subscriptionId": sub}
    if item is not None:
        data["id"] = item
    if since is not None:
        data["since"] = since
    return orjson.dumps({"type": "join", "data": data}).decode()


def leave_frame(stream: str = "todo", group: str = "inbox", item: str | None = None, sub: str = "s1") -> str:
    data: dict[str, Any] = {"streamName": stream, "groupId": group, "subscriptionId": sub}
    if item is not None:
        data["id"] = item
    return orjson.dumps({"type": "leave", "data": data}).decode()


async def receive(connection: ClientConnection, count: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` messages, decoded; fails after ``timeout``."""
    got = []
    for _ in range(count):
        frame = await asyncio.wait_for(connection.recv(), timeout)
        assert isinstance(frame, str), "the server sends text frames (browsers parse them)"
        got.append(orjson.loads(frame))
    return got
