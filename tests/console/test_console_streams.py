"""The console's Streams view API and its live stream feed, in-process: listing, validation, auth, and the
changes of the store's stream log reaching an open event stream as they commit."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import BaseModel

from motia.console.routes import console_routes
from motia.console.streams import FEED_VALUE_LIMIT
from motia.runtime.app import MotiaApp
from motia.runtime.http import build_asgi
from motia.streams import StreamConfig, StreamManager
from motia.streams.config import definition_from_config
from tests.console.sse import Feed
from tests.polling import eventually

TOKEN = "s3cret-console-token"
BASE = "http://127.0.0.1:3111"


class Todo(BaseModel):
    title: str
    done: bool = False


DEFINITIONS = [
    definition_from_config(StreamConfig(name="todo", schema=Todo, history=50), source="steps/todo_stream.py"),
    definition_from_config({"name": "chat", "description": "Chat rooms"}, source="steps/chat.stream.py"),
]


@pytest.fixture
async def app():
    app = MotiaApp([], state="memory://", cron=False, streams=DEFINITIONS)
    await app.startup()
    yield app
    await app.shutdown()


@pytest.fixture
def streams(app) -> StreamManager:
    """The app's streams: what its handlers write through."""
    return app.streams


def client_for(app: MotiaApp, *, token: str | None = None) -> httpx.AsyncClient:
    asgi = build_asgi(app, extra_routes=console_routes(app, token=token))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE)


@pytest.fixture
def asgi(app):
    return build_asgi(app, extra_routes=console_routes(app))


@pytest.fixture
async def client(asgi):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
        yield client


async def fill(streams: StreamManager) -> None:
    await streams.set("todo", "inbox", "t2", {"title": "write tests"})
    await streams.set("todo", "inbox", "t1", {"title": "read SPEC 10"})
    await streams.set("todo", "done", "t0", {"title": "install", "done": True})


# -- listing --------------------------------------------------------------------------------------------


async def test_streams_lists_declared_streams_and_stored_ones(client, app, streams):
    # Given two declared streams, one with items, and a stream stored on the same store by another app
    await fill(streams)
    other = StreamManager(app.state.backend, [definition_from_config({"name": "legacy"})])
    await other.set("legacy", "g", "x", {"old": True})

    answer = (await client.get("/__motia/api/streams")).json()

    assert [(s["name"], s["groups"], s["declared"]) for s in answer["streams"]] == [
        ("chat", 0, True),
        ("legacy", 1, False),
        ("todo", 2, True),
    ]
    todo = answer["streams"][2]
    assert todo["schema"] == "Todo" and todo["history"] == 50 and todo["source"] == "steps/todo_stream.py"
    chat = answer["streams"][0]
    assert chat["description"] == "Chat rooms" and chat["schema"] is None
    assert answer["streams"][1]["source"] is None


async def test_groups_of_a_stream(client, streams):
    await fill(streams)
    answer = (await client.get("/__motia/api/streams/groups", params={"stream": "todo"})).json()
    assert answer["stream"] == "todo" and answer["groups"] == ["done", "inbox"] and answer["declared"]
    empty = (await client.get("/__motia/api/streams/groups", params={"stream": "chat"})).json()
    assert empty["groups"] == []


async def test_items_of_a_group_in_id_order_with_the_groups_seq(client, streams):
    await fill(streams)
    await streams.update("todo", "inbox", "t1", [{"type": "set", "path": "done", "value": True}])

    answer = (await client.get("/__motia/api/streams/items", params={"stream": "todo", "group": "inbox"})).json()

    assert answer["seq"] == 3  # two creates and an update in this group
    assert answer["count"] == 2 and answer["truncated"] is False
    assert answer["items"] == [
        {"id": "t1", "version": 2, "value": {"title": "read SPEC 10", "done": True, "id": "t1"}},
        {"id": "t2", "version": 1, "value": {"title": "write tests", "id": "t2"}},
    ]
    first = (
        await client.get("/__motia/api/streams/items", params={"stream": "todo", "group": "inbox", "limit": 1})
    ).json()
    assert [item["id"] for item in first["items"]] == ["t1"] and first["count"] == 2 and first["truncated"] is True


async def test_one_item(client, streams):
    await fill(streams)
    found = await client.get("/__motia/api/streams/item", params={"stream": "todo", "group": "done", "id": "t0"})
    assert found.status_code == 200
    assert found.json() == {
        "stream": "todo",
        "group": "done",
        "id": "t0",
        "version": 1,
        "value": {"title": "install", "done": True, "id": "t0"},
    }
    missing = await client.get("/__motia/api/streams/item", params={"stream": "todo", "group": "done", "id": "nope"})
    assert missing.status_code == 404 and "'nope'" in missing.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "status", "message"),
    [
        ("groups", {}, 400, "missing query parameter 'stream'"),
        ("groups", {"stream": "nope"}, 404, "no stream named 'nope'"),
        ("items", {"stream": "todo"}, 400, "missing query parameter 'group'"),
        ("items", {"stream": "nope", "group": "g"}, 404, "declared: chat, todo"),
        ("items", {"stream": "todo", "group": "g", "limit": "0"}, 400, "between 1 and 1000"),
        ("items", {"stream": "todo", "group": "g", "limit": "many"}, 400, "must be an integer"),
        ("items", {"stream": "todo", "group": "g" * 1025}, 400, "group"),
        ("item", {"stream": "todo", "group": "g"}, 400, "missing query parameter 'id'"),
    ],
)
async def test_bad_queries_get_a_clear_error(client, path, params, status, message):
    response = await client.get(f"/__motia/api/streams/{path}", params=params)
    assert response.status_code == status
    assert message in response.json()["error"]


async def test_stream_endpoints_need_the_console_token(app, streams):
    await fill(streams)
    async with client_for(app, token=TOKEN) as client:
        for path, params in [
            ("streams", {}),
            ("streams/groups", {"stream": "todo"}),
            ("streams/items", {"stream": "todo", "group": "inbox"}),
            ("streams/item", {"stream": "todo", "group": "inbox", "id": "t1"}),
        ]:
            refused = await client.get(f"/__motia/api/{path}", params=params)
            assert refused.status_code == 401, path
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            allowed = await client.get(f"/__motia/api/{path}", params=params, headers=bearer)
            assert allowed.status_code == 200, path


async def test_an_app_without_streams_shows_what_the_store_holds(app, streams):
    # Given items stored by this app, and another app on the same store that declares no stream
    await fill(streams)
    bare = MotiaApp([], state=app.state, cron=False, delivery=False)
    async with client_for(bare) as client:
        listed = (await client.get("/__motia/api/streams")).json()["streams"]
        items = (await client.get("/__motia/api/streams/items", params={"stream": "todo", "group": "done"})).json()
    assert [(s["name"], s["declared"]) for s in listed] == [("todo", False)]
    assert [item["id"] for item in items["items"]] == ["t0"]


# -- the live feed --------------------------------------------------------------------------------------


async def tailing(client: httpx.AsyncClient) -> bool:
    return (await client.get("/__motia/api/info")).json()["streams"]["tailing"]


async def not_tailing(client: httpx.AsyncClient) -> bool:
    return not await tailing(client)


async def test_stream_changes_reach_an_open_feed_as_they_commit(app, streams, asgi, client):
    # Given an open console feed (nothing tails the store before a page watches)
    assert not await tailing(client)
    feed = await Feed(asgi).open()
    assert await tailing(client)
    assert feed.status == 200
    hello = await feed.next("hello")
    assert hello == {"durable": False}

    # When items are created, updated and deleted, and an event is sent, through the stream manager
    await streams.set("todo", "inbox", "t1", {"title": "a"})
    await streams.update("todo", "inbox", "t1", [{"type": "set", "path": "done", "value": True}])
    await streams.send("chat", {"groupId": "room-1"}, {"type": "typing", "data": {"user": "ann"}})
    await streams.delete("todo", "inbox", "t1")

    # Then each arrives once, in commit order, as an `event: stream` with its data and seq
    received = [await feed.next() for _ in range(4)]
    assert [(e["stream"], e["group_id"], e["item_id"], e["event_type"], e["seq"]) for e in received] == [
        ("todo", "inbox", "t1", "create", 1),
        ("todo", "inbox", "t1", "update", 2),
        ("chat", "room-1", None, "event", 1),
        ("todo", "inbox", "t1", "delete", 3),
    ]
    assert received[0]["data"] == {"title": "a", "id": "t1"}
    assert received[1]["data"]["done"] is True
    assert received[2]["data"] == {"type": "typing", "data": {"user": "ann"}}
    assert received[3]["data"] == {"title": "a", "done": True, "id": "t1"}  # the item deleted
    positions = [e["position"] for e in received]
    assert positions == sorted(positions) and all(e["kind"] == "stream" for e in received)
    assert feed.messages.empty()

    # And a state change still arrives as an `event: state` on the same feed
    app.state_events.publish({"event_type": "created", "group_id": "s", "item_id": "k"})
    assert (await feed.next("state"))["item_id"] == "k"

    # When the page goes away, the tail stops
    await feed.close()
    await eventually(lambda: not_tailing(client), what="the tail to stop")


async def test_the_tail_runs_while_any_feed_is_open(app, streams, asgi, client):
    # Given two open pages
    first, second = await Feed(asgi).open(), await Feed(asgi).open()

    # When one goes away, the other still gets changes
    await first.close()
    await streams.set("todo", "inbox", "t1", {"title": "after the first left"})
    assert (await second.next())["item_id"] == "t1"
    assert await tailing(client)

    # And when the last goes away the tail stops; a new page starts it again
    await second.close()
    await eventually(lambda: not_tailing(client), what="the tail to stop")
    third = await Feed(asgi).open()
    assert await tailing(client)
    await streams.set("todo", "inbox", "t3", {"title": "seen"})
    seen = [await third.next()]  # (the hub replays its recent events to a new page first: t1)
    while seen[-1]["item_id"] != "t3":
        seen.append(await third.next())
    assert [e["item_id"] for e in seen] == ["t1", "t3"]
    await third.close()


async def test_a_big_item_is_named_not_carried(app, streams, asgi):
    feed = await Feed(asgi).open()
    await streams.set("todo", "inbox", "big", {"title": "x" * (FEED_VALUE_LIMIT + 10)})
    event = await feed.next()
    assert event["item_id"] == "big" and event["data"] is None
    assert event["data_omitted"] > FEED_VALUE_LIMIT
    await feed.close()


async def test_a_closed_store_stops_the_tail_and_says_so(app, streams, asgi, client, caplog):
    caplog.set_level(logging.INFO, logger="motia.console")
    feed = await Feed(asgi).open()
    assert await tailing(client)
    await app.state.backend.aclose()
    await eventually(lambda: "the state store is closed" in caplog.text, what="the closed store to be logged")
    assert not (await client.get("/__motia/api/info")).json()["streams"]["tailing"]
    await feed.close()
