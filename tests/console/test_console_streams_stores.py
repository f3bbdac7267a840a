"""The console's stream feed on shared stores: changes made by another process on the same SQLite file,
Redis server or PostgreSQL database reach an open feed in commit order, and the feed survives its Redis
server going away."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from motia.console.routes import console_routes
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.streams.config import definition_from_config
from tests.console.sse import Feed
from tests.polling import eventually

REPO = Path(__file__).resolve().parents[2]
TODO = definition_from_config({"name": "todo"}, source="todo_stream.py")
_prefixes = itertools.count()


def store_url(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if kind == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=console{next(_prefixes)}"
    server = request.getfixturevalue("redis_server")
    return f"{server.url}?prefix=console{next(_prefixes)}"


@pytest.fixture(params=["sqlite", "redis", "postgres"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MotiaApp]:
    app = MotiaApp([], state=store_url(request.param, request, tmp_path), cron=False, streams=[TODO])
    await app.startup()
    yield app
    await app.shutdown()
    await app.state.aclose()


async def write_from_another_process(url: str) -> None:
    writer = await asyncio.create_subprocess_exec(sys.executable, "-m", "tests.console._stream_writer", url, cwd=REPO)
    assert await asyncio.wait_for(writer.wait(), 60) == 0


async def test_changes_from_another_process_reach_the_feed_in_order(app):
    # Given a console page's feed open on this process
    asgi = build_asgi(app, extra_routes=console_routes(app))
    feed = await Feed(asgi).open()

    # When another process writes the stream on the same store
    await write_from_another_process(app.state.url)

    # Then its four changes arrive once each, in its commit order, with their data
    received = [await feed.next() for _ in range(4)]
    assert [(e["item_id"], e["event_type"], e["seq"]) for e in received] == [
        ("p1", "create", 1),
        ("p1", "update", 2),
        (None, "event", 3),
        ("p1", "delete", 4),
    ]
    assert received[1]["data"] == {"title": "from another process", "done": True, "id": "p1"}
    assert received[2]["data"] == {"type": "ping", "data": {"from": "writer"}}
    assert feed.messages.empty()
    await feed.close()


async def test_the_feed_survives_its_redis_server_restarting_without_its_data(redis_server_factory, caplog):
    caplog.set_level(logging.INFO, logger="motia.console")
    # Given a feed open on an app whose Redis server keeps nothing on disk (calls give up after 1 s, not
    # the default 10, so the tail's failure is logged soon after the server goes)
    server = redis_server_factory()
    app = MotiaApp([], state=f"{server.url}?timeout=1", cron=False, delivery=False, streams=[TODO])
    await app.startup()
    try:
        asgi = build_asgi(app, extra_routes=console_routes(app))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://127.0.0.1") as client:
            feed = await Feed(asgi).open()
            for n in range(3):
                await app.streams.set("todo", "inbox", f"before-{n}", {"n": n})
            assert [(await feed.next())["item_id"] for _ in range(3)] == ["before-0", "before-1", "before-2"]

            # When the server goes away for a while (the tail fails and logs), then comes back empty
            server.stop()
            await eventually(
                lambda: "reading the stream log failed" in caplog.text, timeout=20, what="the failure to be logged"
            )
            server.start()

            # Then the tail is still running, follows the restarted log, and a new change reaches the page
            async def written() -> bool:
                try:
                    await app.streams.set("todo", "inbox", "after", {"n": 9})
                except Exception:  # the app's own client may still be reconnecting
                    return False
                return True

            await eventually(written, timeout=30, what="a write after the restart")
            event = await feed.next()
            assert (event["item_id"], event["event_type"], event["seq"]) == ("after", "create", 1)
            assert (await client.get("/__motia/api/info")).json()["streams"]["tailing"] is True
            assert "went back from position 3 to" in caplog.text
            await feed.close()
    finally:  # never leave a started app (and its global bindings) to the tests that follow
        await app.shutdown()
        await app.state.aclose()
