"""The SSE endpoints ``GET /__motia/streams/{stream}/{group}[/{id}]`` over a real server (uvicorn on a
loopback port, in this event loop), read with httpx streaming as a browser's ``EventSource`` would."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from motia.runtime.app import MotiaApp
from motia.runtime.streams import sse
from motia.state.manager import StateManager
from motia.streams.config import StreamConfig, definition_from_config
from tests.polling import eventually
from tests.streams.serving import serving
from tests.streams.sse_reader import EventReader

PRESENCE: list[tuple[str, str, Any]] = []


def _can_access(subscription: Any, auth_context: Any) -> bool:
    if subscription.group_id == "boom":
        raise RuntimeError("a can_access bug")
    return subscription.group_id != "secret"


async def _on_join(subscription: Any, ctx: Any, auth_context: Any) -> None:
    PRESENCE.append(("join", subscription.group_id, auth_context))


def _on_leave(subscription: Any, ctx: Any, auth_context: Any) -> None:
    PRESENCE.append(("leave", subscription.group_id, auth_context))


def _authenticate(request: Any) -> Any:
    if request.token is None:
        return None
    if request.token != "good":
        raise PermissionError("bad token")
    return {"user": "ann"}


def _app(state: StateManager, *, history: int = 1000, auth: bool = False) -> MotiaApp:
    streams = [
        definition_from_config(StreamConfig(name="todo", history=history)),
        definition_from_config(
            StreamConfig(name="guarded", can_access=_can_access, on_join=_on_join, on_leave=_on_leave)
        ),
    ]
    return MotiaApp([], state=state, streams=streams, stream_authenticate=_authenticate if auth else None)


@pytest.fixture
async def app(stream_state: StateManager) -> MotiaApp:
    return _app(stream_state)


@pytest.fixture
async def http(app: MotiaApp) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        yield client


@contextlib.asynccontextmanager
async def events(http: httpx.AsyncClient, path: str, **kwargs: Any) -> AsyncIterator[EventReader]:
    async with http.stream("GET", path, **kwargs) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        yield EventReader(response)


async def test_group_events_sync_then_every_change(app: MotiaApp, http: httpx.AsyncClient) -> None:
    # Given a group with one item
    await app.streams.set("todo", "inbox", "a", {"title": "A"})
    # When a client opens its event stream
    async with events(http, "/__motia/streams/todo/inbox") as reader:
        sync = await reader.next()
        await app.streams.set("todo", "inbox", "b", {"title": "B"})
        await app.streams.update("todo", "inbox", "a", [{"type": "set", "path": "done", "value": True}])
        await app.streams.delete("todo", "inbox", "b")
        await app.streams.send("todo", {"groupId": "inbox"}, {"type": "typing", "data": {"who": "ann"}})
        changes = [await reader.next() for _ in range(4)]
    # Then it gets the sync (event: sync, id: the seq, data: the WebSocket message), then each change
    assert sync is not None and (sync.event, sync.id) == ("sync", "1")
    assert sync.data["type"] == "stream" and sync.data["seq"] == 1
    assert (sync.data["streamName"], sync.data["groupId"]) == ("todo", "inbox")
    assert sync.data["event"] == {"type": "sync", "data": [{"title": "A", "id": "a"}]}
    assert [(c.event, c.id, c.data["id"] if "id" in c.data else None) for c in changes if c] == [
        ("create", "2", "b"),
        ("update", "3", "a"),
        ("delete", "4", "b"),
        ("event", "5", None),
    ]
    assert changes[1] is not None and changes[1].data["event"]["data"] == {"title": "A", "done": True, "id": "a"}
    assert changes[3] is not None and changes[3].data["event"] == {
        "type": "event",
        "event": {"type": "typing", "data": {"who": "ann"}},
    }
    stamps = [e.data["timestamp"] for e in (sync, *changes) if e]
    assert stamps == sorted(set(stamps))


async def test_item_events_see_only_the_item(app: MotiaApp, http: httpx.AsyncClient) -> None:
    async with events(http, "/__motia/streams/todo/inbox/a") as reader:
        sync = await reader.next()
        await app.streams.set("todo", "inbox", "b", {"n": 1})
        await app.streams.set("todo", "inbox", "a", {"n": 2})
        change = await reader.next()
    assert sync is not None and (sync.event, sync.data["id"], sync.data["event"]["data"]) == ("sync", "a", None)
    assert change is not None and (change.event, change.id, change.data["event"]["data"]) == (
        "create",
        "2",
        {"n": 2, "id": "a"},
    )


@pytest.mark.parametrize("resume", ["last-event-id", "since"])
async def test_resume_sends_exactly_the_missed_changes(app: MotiaApp, http: httpx.AsyncClient, resume: str) -> None:
    # Given a client that saw the group up to some seq, then went away
    await app.streams.set("todo", "g", "a", {"n": 0})
    async with events(http, "/__motia/streams/todo/g") as reader:
        sync = await reader.next()
    assert sync is not None and sync.id is not None
    # When three changes happen, and it comes back with the last id it saw
    for n in range(1, 4):
        await app.streams.set("todo", "g", "a", {"n": n})
    if resume == "last-event-id":
        options: dict[str, Any] = {"headers": {"Last-Event-ID": sync.id}}
    else:
        options = {"params": {"since": sync.id}}
    async with events(http, "/__motia/streams/todo/g", **options) as reader:
        missed = [await reader.next() for _ in range(3)]
        await app.streams.set("todo", "g", "a", {"n": 4})
        live = await reader.next()
    # Then it gets those three (no sync), in order, then live changes
    assert [(e.event, e.id, e.data["event"]["data"]["n"]) for e in missed if e] == [
        ("update", "2", 1),
        ("update", "3", 2),
        ("update", "4", 3),
    ]
    assert live is not None and (live.event, live.id) == ("update", "5")


async def test_resume_past_the_history_sends_a_reset_sync(stream_state: StateManager) -> None:
    app = _app(stream_state, history=2)
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        for n in range(6):
            await app.streams.set("todo", "g", "a", {"n": n})
        async with events(http, "/__motia/streams/todo/g", headers={"Last-Event-ID": "1"}) as reader:
            first = await reader.next()
            assert first is not None
            rest = [] if first.event == "sync" else [await reader.next() for _ in range(4)]
        # A cursor the store never reached (another store's) resets on every backend
        async with events(http, "/__motia/streams/todo/g", headers={"Last-Event-ID": "99"}) as reader:
            beyond = await reader.next()
    reset = {"type": "sync", "data": [{"n": 5, "id": "a"}], "reset": True}
    if stream_state.url.startswith("memory") or first.event == "sync":
        assert (first.event, first.id, first.data["event"]) == ("sync", "6", reset)
    else:  # a store may keep more than asked (SQLite, Redis): then the replay is whole
        assert [e.id for e in [first, *rest] if e] == ["2", "3", "4", "5", "6"]
    assert beyond is not None and (beyond.event, beyond.id, beyond.data["event"]) == ("sync", "6", reset)


async def test_refusals_are_http_answers(http: httpx.AsyncClient) -> None:
    async def status(path: str, **kwargs: Any) -> tuple[int, str]:
        response = await http.get(path, **kwargs)
        return response.status_code, response.json()["error"]["code"]

    assert await status("/__motia/streams/nope/g") == (404, "STREAM_NOT_FOUND")
    assert await status("/__motia/streams/guarded/secret") == (403, "STREAM_ACCESS_DENIED")
    assert await status("/__motia/streams/guarded/boom") == (403, "STREAM_ACCESS_DENIED")  # a raising hook denies
    assert await status("/__motia/streams/todo/g", headers={"Last-Event-ID": "x"}) == (400, "INVALID_MESSAGE")
    assert await status("/__motia/streams/todo/g", params={"since": "-1"}) == (400, "INVALID_MESSAGE")


async def test_stream_authenticate_refusal_is_401(stream_state: StateManager) -> None:
    app = _app(stream_state, auth=True)
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        refused = await http.get("/__motia/streams/todo/g", headers={"Authorization": "Bearer wrong"})
        refused_query = await http.get("/__motia/streams/todo/g", params={"authToken": "wrong"})
        PRESENCE.clear()
        async with events(http, "/__motia/streams/guarded/g", headers={"Authorization": "Bearer good"}) as reader:
            sync = await reader.next()
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "UNAUTHORIZED")
    assert refused_query.status_code == 401
    assert sync is not None and sync.event == "sync"
    # The hooks saw the auth context stream_authenticate returned
    await eventually(lambda: len(PRESENCE) == 2, what="on_leave after the response ended")
    assert PRESENCE == [("join", "g", {"user": "ann"}), ("leave", "g", {"user": "ann"})]


async def test_keepalive_comments_while_silent(app: MotiaApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE", 0.05)
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        async with events(http, "/__motia/streams/todo/g") as reader:
            assert (await reader.next()) is not None  # the sync
            # When nothing happens, Then comments keep the response alive, and nothing else is sent
            assert [await reader.next_comment(), await reader.next_comment()] == ["keep-alive", "keep-alive"]


async def test_presence_hooks_run_when_the_client_goes_away(http: httpx.AsyncClient) -> None:
    PRESENCE.clear()
    async with events(http, "/__motia/streams/guarded/room") as reader:
        assert (await reader.next()) is not None
        assert PRESENCE == [("join", "room", None)]
    await eventually(lambda: len(PRESENCE) == 2, what="on_leave after the client disconnected")
    assert PRESENCE[1] == ("leave", "room", None)


async def test_a_reader_that_stops_reading_is_ended_and_can_resume(stream_state: StateManager) -> None:
    # Given a stream subscriber whose queue holds at most 20 messages
    app = _app(stream_state)
    app.stream_hub.queue_limit = 20
    changes = 100
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        async with events(http, "/__motia/streams/todo/g") as reader:
            sync = await reader.next()
            assert sync is not None
            # When it stops reading while 10 MB of changes are written (more than the socket buffers hold)
            blob = "x" * 100_000
            for n in range(changes):
                await app.streams.set("todo", "g", "a", {"n": n, "blob": blob})
            # Then the server ends its response, saying why, before the last change
            seen: list[int] = []
            while (event := await reader.next(timeout=30)) is not None:
                seen.append(int(event.id or 0))
            assert len(seen) < changes
            assert any(comment.startswith("closed:") and "too slow" in comment for comment in reader.comments)
        # And resuming from the last id it saw gets the rest, in order (with room in the queue for them:
        # a replay that does not fit is a reset sync, see the next test)
        app.stream_hub.queue_limit = 1000
        app.stream_hub.queue_bytes = 64 * 1024 * 1024
        last = seen[-1] if seen else int(sync.id or 0)
        async with events(http, "/__motia/streams/todo/g", headers={"Last-Event-ID": str(last)}) as reader:
            rest: list[int] = []
            while len(rest) < changes - last:
                event = await reader.next(timeout=30)
                assert event is not None
                rest.append(int(event.id or 0))
    assert rest == list(range(last + 1, changes + 1))


async def test_a_resume_larger_than_the_queue_is_a_reset_sync(stream_state: StateManager) -> None:
    # Given a subscriber queue of 5 messages and a client 10 changes behind (all still in the history)
    app = _app(stream_state)
    app.stream_hub.queue_limit = 5
    for n in range(10):
        await app.streams.set("todo", "g", "a", {"n": n})
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        # When it resumes, Then it gets one reset sync (a replay would overflow its queue at once, end the
        # response, and the client would come back from the same seq forever), and then live changes
        async with events(http, "/__motia/streams/todo/g", headers={"Last-Event-ID": "0"}) as reader:
            reset = await reader.next()
            await app.streams.set("todo", "g", "a", {"n": 10})
            live = await reader.next()
    assert reset is not None and (reset.event, reset.id) == ("sync", "10")
    assert reset.data["event"] == {"type": "sync", "data": [{"n": 9, "id": "a"}], "reset": True}
    assert live is not None and (live.event, live.id) == ("update", "11")


async def test_a_two_argument_stream_authenticate_gets_a_ctx_and_the_path(stream_state: StateManager) -> None:
    seen: list[tuple[str, bool]] = []

    async def authenticate(request: Any, ctx: Any) -> Any:  # motia-py 1.0's authenticate(input, ctx)
        seen.append((request.path, ctx is not None and ctx.state is not None))
        return {"via": "ctx"}

    app = _app(stream_state)
    app.stream_authenticate = authenticate
    PRESENCE.clear()
    async with serving(app) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        async with events(http, "/__motia/streams/guarded/room") as reader:
            assert (await reader.next()) is not None
    assert seen == [("/__motia/streams/guarded/room", True)]
    assert PRESENCE[0] == ("join", "room", {"via": "ctx"})
