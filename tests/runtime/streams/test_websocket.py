"""The stream WebSocket endpoint over real sockets (uvicorn in-process, the ``websockets`` client).

"Nothing else arrived" is shown with a marker: after the changes under test, an event is sent to the
same subscription, and the next message must be that marker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from motia.exceptions import StateBackendUnavailable
from motia.runtime.app import MotiaApp
from motia.runtime.streams.hub import StreamHub
from motia.state.backends.memory import MemoryBackend
from motia.state.manager import StateManager
from motia.streams.config import StreamDefinition
from tests.runtime.streams.conftest import ServeApp, join_frame, leave_frame, receive

Connect = Callable[..., Awaitable[ClientConnection]]


def make_app(*definitions: StreamDefinition, **options: Any) -> MotiaApp:
    return MotiaApp(
        [], state="memory://", cron=False, streams=definitions or [StreamDefinition(name="todo")], **options
    )


async def marker(app: MotiaApp, connection: ClientConnection, group: str = "inbox", item: str | None = None) -> None:
    """Send a marker event and check it is the very next message: nothing else was sent before it."""
    channel = {"groupId": group} if item is None else {"groupId": group, "id": item}
    await app.streams.send("todo", channel, {"type": "marker", "data": None})
    [message] = await receive(connection)
    assert message["event"] == {"type": "event", "event": {"type": "marker", "data": None}}, message


@pytest.mark.parametrize("path", ["", "/", "/__motia/streams"])
async def test_sync_then_every_change_on_both_paths(serve_app: ServeApp, ws_connect: Connect, path: str) -> None:
    # Given a served app with one item in a group
    app = make_app()
    url = await serve_app(app)
    await app.streams.set("todo", "inbox", "t1", {"title": "one"})
    # When a client joins the group
    ws = await ws_connect(url + path)
    await ws.send(join_frame())
    [synced] = await receive(ws)
    assert synced["type"] == "stream" and "id" not in synced
    assert (synced["streamName"], synced["groupId"], synced["seq"]) == ("todo", "inbox", 1)
    assert synced["event"] == {"type": "sync", "data": [{"title": "one", "id": "t1"}]}
    # Then create, update, delete and events follow, each once, with increasing timestamps
    await app.streams.set("todo", "inbox", "t2", {"title": "two"})
    await app.streams.update("todo", "inbox", "t2", [{"type": "set", "path": "title", "value": "2"}])
    await app.streams.delete("todo", "inbox", "t1")
    await app.streams.send("todo", {"group_id": "inbox"}, {"type": "typing", "data": {"who": "ann"}})
    got = await receive(ws, 4)
    assert [(m.get("id"), m["seq"], m["event"]) for m in got] == [
        ("t2", 2, {"type": "create", "data": {"title": "two", "id": "t2"}}),
        ("t2", 3, {"type": "update", "data": {"title": "2", "id": "t2"}}),
        ("t1", 4, {"type": "delete", "data": {"title": "one", "id": "t1"}}),
        (None, 5, {"type": "event", "event": {"type": "typing", "data": {"who": "ann"}}}),
    ]
    stamps = [synced["timestamp"], *(m["timestamp"] for m in got)]
    assert all(b > a for a, b in zip(stamps, stamps[1:], strict=False))
    await marker(app, ws)


async def test_one_message_per_change_with_a_group_and_an_item_subscription(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    await ws.send(join_frame(sub="group"))
    await ws.send(join_frame(item="t1", sub="item"))
    group_sync, item_sync = await receive(ws, 2)
    assert ("id" in group_sync, item_sync["id"], item_sync["event"]) == (False, "t1", {"type": "sync", "data": None})
    await app.streams.set("todo", "inbox", "t1", {"n": 1})
    await app.streams.set("todo", "inbox", "t2", {"n": 2})
    await app.streams.send("todo", {"groupId": "inbox", "id": "t1"}, {"type": "ping", "data": 1})
    got = await receive(ws, 3)
    assert [(m["id"], m["seq"], m["event"]["type"]) for m in got] == [
        ("t1", 1, "create"),
        ("t2", 2, "create"),
        ("t1", 3, "event"),
    ]
    await marker(app, ws)  # and no second copy of any of them


async def test_two_changes_in_one_millisecond_both_reach_the_item_subscription(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    await ws.send(join_frame(item="t1"))
    await receive(ws)
    # Two writes committed back to back (well within one millisecond of each other)
    await asyncio.gather(
        app.streams.set("todo", "inbox", "t1", {"n": 1}), app.streams.set("todo", "inbox", "t1", {"n": 2})
    )
    first, second = await receive(ws, 2)
    assert second["timestamp"] > first["timestamp"]  # Motia's clients drop a message not newer than the last
    assert [first["event"]["data"]["n"], second["event"]["data"]["n"]] == [1, 2]


async def test_leave_ends_a_subscription(serve_app: ServeApp, ws_connect: Connect) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    await ws.send(join_frame(sub="group"))
    await ws.send(join_frame(item="t1", sub="item"))
    await receive(ws, 2)
    await ws.send(leave_frame(sub="group"))
    await ws.send(leave_frame(sub="nobody"))  # leaving what was never joined is harmless
    await app.streams.set("todo", "inbox", "t2", {"n": 2})  # only the group wanted this one
    await app.streams.set("todo", "inbox", "t1", {"n": 1})
    [message] = await receive(ws)
    assert (message["id"], message["seq"]) == ("t1", 2)


async def test_resume_with_since_replays_exactly_the_missed_changes(serve_app: ServeApp, ws_connect: Connect) -> None:
    app = make_app(StreamDefinition(name="todo", history=3))
    url = await serve_app(app)
    first = await ws_connect(url)
    await first.send(join_frame())
    [synced] = await receive(first)
    await app.streams.set("todo", "inbox", "a", {"n": 1})
    [seen] = await receive(first)
    await first.close()
    # Missed while disconnected
    await app.streams.set("todo", "inbox", "b", {"n": 2})
    await app.streams.delete("todo", "inbox", "a")
    again = await ws_connect(url)
    await again.send(join_frame(since=seen["seq"]))
    got = await receive(again, 2)
    assert [(m["seq"], m["event"]["type"], m["id"]) for m in got] == [(2, "create", "b"), (3, "delete", "a")]
    await marker(app, again)
    # Past the history (3 changes kept): a reset sync instead
    for n in range(4):
        await app.streams.set("todo", "inbox", "b", {"n": n})
    late = await ws_connect(url)
    await late.send(join_frame(since=synced["seq"]))
    [reset] = await receive(late)
    assert (reset["seq"], reset["event"]) == (8, {"type": "sync", "data": [{"n": 3, "id": "b"}], "reset": True})


async def test_can_access_false_or_raising_denies_and_sends_no_data(
    serve_app: ServeApp, ws_connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    def can_access(subscription: Any, auth_context: Any) -> bool:
        if subscription.group_id == "boom":
            raise RuntimeError("broken rule")
        return subscription.group_id == "public"

    app = make_app(StreamDefinition(name="todo", can_access=can_access))
    url = await serve_app(app)
    await app.streams.set("todo", "secret", "t", {"n": 1})
    ws = await ws_connect(url)
    with caplog.at_level(logging.ERROR, "motia.streams"):
        for group in ("secret", "boom"):
            await ws.send(join_frame(group=group, sub=group))
            denied, as_motia_sends_it = await receive(ws, 2)
            assert (denied["streamName"], denied["groupId"], denied["event"]["type"]) == ("todo", group, "error")
            assert denied["event"]["data"]["code"] == "STREAM_ACCESS_DENIED"
            assert denied["event"]["data"]["subscriptionId"] == group
            # then Motia 0.17's form, a custom "error" event its npm clients hand to onEvent('error')
            assert (as_motia_sends_it["groupId"], as_motia_sends_it["event"]["type"]) == (group, "event")
            assert as_motia_sends_it["event"]["event"] == {"type": "error", "data": denied["event"]["data"]}
    assert "can_access of stream 'todo' raised" in caplog.text
    await app.streams.set("todo", "secret", "t", {"n": 2})
    await ws.send(join_frame(group="public", sub="p"))
    [synced] = await receive(ws)
    assert (synced["groupId"], synced["event"]["type"]) == ("public", "sync")  # nothing of "secret" came first
    await marker(app, ws, group="public")


async def test_bad_input_gets_an_error_and_the_socket_keeps_serving(serve_app: ServeApp, ws_connect: Connect) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    bystander = await ws_connect(url)
    await bystander.send(join_frame())
    await receive(bystander)
    cases = [
        ("{not json", "INVALID_MESSAGE", "not JSON"),
        ('{"type": "subscribe", "data": {}}', "INVALID_MESSAGE", '"type" must be "join" or "leave"'),
        ('{"type": "join", "data": {"streamName": "todo", "subscriptionId": "x"}}', "INVALID_MESSAGE", '"groupId"'),
        (join_frame(stream="nope"), "STREAM_NOT_FOUND", "'nope'"),
    ]
    for frame, code, text in cases:
        await ws.send(frame)
        [error] = await receive(ws)
        assert error["event"]["type"] == "error" and error["event"]["data"]["code"] == code, error
        assert text in error["event"]["data"]["message"]
        if code == "STREAM_NOT_FOUND":  # a refused join: Motia's form of the refusal follows
            [as_motia_sends_it] = await receive(ws)
            assert as_motia_sends_it["event"] == {
                "type": "event",
                "event": {"type": "error", "data": error["event"]["data"]},
            }
    await ws.send(b'{"type": "join", "data": {"streamName": "todo", "groupId": "inbox", "subscriptionId": "bin"}}')
    [synced] = await receive(ws)  # a binary frame is read too, and the socket still serves
    assert synced["event"]["type"] == "sync"
    await app.streams.set("todo", "inbox", "t", {"n": 1})
    assert (await receive(ws))[0]["seq"] == 1
    assert (await receive(bystander))[0]["seq"] == 1


async def test_oversized_frames_close_the_socket_with_a_reason(serve_app: ServeApp, ws_connect: Connect) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    bystander = await ws_connect(url)
    await ws.send(join_frame(group="g" * 70_000))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert "the limit is 65536" in closed.value.rcvd.reason
    await bystander.send(join_frame())
    assert (await receive(bystander))[0]["event"]["type"] == "sync"


async def test_join_floods_are_refused_then_closed(serve_app: ServeApp, ws_connect: Connect) -> None:
    app = make_app()
    url = await serve_app(app)
    ws = await ws_connect(url)
    for n in range(100):
        await ws.send(join_frame(sub=f"s{n}", group=f"g{n}"))
    assert all(m["event"]["type"] == "sync" for m in await receive(ws, 100))
    await ws.send(join_frame(sub="one-too-many"))
    refused, as_motia_sends_it = await receive(ws, 2)
    assert refused["event"]["data"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
    assert as_motia_sends_it["event"]["event"] == {"type": "error", "data": refused["event"]["data"]}
    # A client that keeps sending refused frames is cut off
    for _ in range(100):
        await ws.send("nonsense")
    errors = 0
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
            errors += 1
    assert errors == 99 and closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "100 refused frames in a row")
    # Its subscriptions ended; the server serves others
    other = await ws_connect(url)
    await other.send(join_frame())
    assert (await receive(other))[0]["event"]["type"] == "sync"
    assert app.stream_hub.subscribers == 1


async def test_presence_hooks_run_and_leave_runs_when_the_socket_closes(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    calls: list[tuple[str, str | None]] = []
    left = asyncio.Event()

    async def on_join(subscription: Any, ctx: Any, auth_context: Any) -> None:
        calls.append(("join", subscription.subscription_id))
        await ctx.state.set("presence", subscription.subscription_id, {"here": True})

    async def on_leave(subscription: Any, ctx: Any, auth_context: Any) -> None:
        calls.append(("leave", subscription.subscription_id))
        await ctx.state.delete("presence", subscription.subscription_id)
        left.set()

    app = make_app(StreamDefinition(name="todo", on_join=on_join, on_leave=on_leave))
    url = await serve_app(app)
    ws = await ws_connect(url)
    await ws.send(join_frame(sub="a"))
    await receive(ws)
    assert await app.state.get("presence", "a") == {"here": True}
    await ws.close()
    await asyncio.wait_for(left.wait(), 5)
    assert calls == [("join", "a"), ("leave", "a")]
    assert await app.state.get("presence", "a") is None


def authenticate(request: Any) -> Any:
    if request.token is None:
        return None  # anonymous
    if request.token != "good":
        raise PermissionError("bad token")
    return {"user": "ann", "via": request.headers.get("x-via")}


async def test_auth_refuses_bad_tokens_with_4401_and_selects_the_authorization_subprotocol(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    contexts: list[Any] = []

    def can_access(subscription: Any, auth_context: Any) -> bool:
        contexts.append(auth_context)
        return True

    app = make_app(StreamDefinition(name="todo", can_access=can_access), stream_authenticate=authenticate)
    url = await serve_app(app)
    # A bad token, however it is sent, is refused with 4401
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("/", {"subprotocols": ["Authorization", "bad"]}),
        ("/", {"additional_headers": {"Authorization": "Bearer bad"}}),
        ("/?authToken=bad", {}),
    ]
    for path, options in attempts:
        ws = await ws_connect(url + path, **options)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            4401,
            "unauthorized",
        )
    # A good one is accepted, by subprotocol (selected, as browsers require), query or bearer
    by_protocol = await ws_connect(url, subprotocols=["Authorization", "good"], additional_headers={"x-via": "p"})
    assert by_protocol.subprotocol == "Authorization"
    by_query = await ws_connect(url + "/__motia/streams?authToken=good", additional_headers={"x-via": "q"})
    by_bearer = await ws_connect(url, additional_headers={"Authorization": "Bearer good", "x-via": "b"})
    anonymous = await ws_connect(url)
    for ws in (by_protocol, by_query, by_bearer, anonymous):
        await ws.send(join_frame())
        assert (await receive(ws))[0]["event"]["type"] == "sync"
    assert contexts == [{"user": "ann", "via": "p"}, {"user": "ann", "via": "q"}, {"user": "ann", "via": "b"}, None]


async def test_auth_fails_closed_when_the_hook_itself_breaks(serve_app: ServeApp, ws_connect: Connect) -> None:
    async def broken(request: Any) -> Any:
        raise RuntimeError("the auth service is down")

    app = make_app(stream_authenticate=broken)
    url = await serve_app(app)
    ws = await ws_connect(url)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert app.stream_hub.subscribers == 0


async def test_http_requests_to_the_stream_paths_are_not_websockets(serve_app: ServeApp) -> None:
    import httpx

    app = make_app()
    url = (await serve_app(app)).replace("ws://", "http://")
    async with httpx.AsyncClient() as client:
        assert (await client.get(url + "/__motia/health")).status_code == 200
        assert (await client.get(url + "/__motia/streams")).status_code in (404, 405)


async def test_a_slow_consumer_is_disconnected_and_others_get_everything(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    # Given a hub with a small queue, a client that stops reading and one that reads
    app = make_app()
    app.stream_hub = StreamHub(app.streams, queue_limit=50, context_factory=app.stream_context)
    url = await serve_app(app)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the kernel holds little for it
    sock.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    slow = await ws_connect(url, max_queue=1, sock=sock, compression=None)
    fast = await ws_connect(url)
    for ws in (slow, fast):
        await ws.send(join_frame())
        await receive(ws)
    # When far more is written than the socket buffers and the queue hold, at the pace of the reader
    payload = "x" * 50_000  # (no compression: the slow client declined it)
    received: list[int] = []
    for n in range(400):
        await app.streams.set("todo", "inbox", "t", {"n": n, "pad": payload})
        received.append((await receive(fast))[0]["seq"])
    # Then the slow one was dropped (it will resume by seq) and the reader got every change in order
    assert received == list(range(1, 401))
    assert app.stream_hub.subscribers == 1
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(slow.recv(), 10)
    if closed.value.rcvd is not None:  # the close frame may not make it past a full buffer
        assert closed.value.rcvd.code == 1013 and "too slow" in closed.value.rcvd.reason


class LogDown(MemoryBackend):
    """A store whose stream change log cannot be read."""

    async def stream_position(self) -> int:
        raise StateBackendUnavailable("the stream log is unreachable")


async def test_a_store_that_cannot_start_the_hub_closes_the_socket_with_1011(
    serve_app: ServeApp, ws_connect: Connect
) -> None:
    app = MotiaApp([], state=StateManager(LogDown()), cron=False, streams=[StreamDefinition(name="todo")])
    url = await serve_app(app)
    ws = await ws_connect(url)
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1011, "the stream store is unavailable")


async def test_def_hooks_run_in_a_thread_with_the_blocking_state_api(serve_app: ServeApp, ws_connect: Connect) -> None:
    left = threading.Event()

    def on_join(subscription: Any, ctx: Any, auth_context: Any) -> None:
        ctx.state.set("presence", subscription.subscription_id, {"thread": threading.current_thread().name})

    def on_leave(subscription: Any, ctx: Any, auth_context: Any) -> None:
        ctx.state.delete("presence", subscription.subscription_id)
        left.set()

    app = make_app(StreamDefinition(name="todo", on_join=on_join, on_leave=on_leave))
    url = await serve_app(app)
    ws = await ws_connect(url)
    await ws.send(join_frame(sub="a"))
    await receive(ws)
    record = await app.state.get("presence", "a")
    assert record is not None and record["thread"] != threading.main_thread().name
    await ws.send(leave_frame(sub="a"))
    await asyncio.to_thread(left.wait, 5)
    assert left.is_set() and await app.state.get("presence", "a") is None


async def test_a_client_that_stops_answering_pings_is_closed_and_leaves(serve_app: ServeApp) -> None:
    left = asyncio.Event()

    async def on_leave(subscription: Any, ctx: Any, auth_context: Any) -> None:
        left.set()

    app = make_app(StreamDefinition(name="todo", on_leave=on_leave))
    url = await serve_app(app, ws_ping_interval=0.2, ws_ping_timeout=0.3)
    port = int(url.rsplit(":", 1)[1])
    # A raw client: the handshake and one join, then it never reads again (so it never answers a ping)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert b"101" in await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    payload = join_frame().encode()
    writer.write(bytes([0x81, 0x80 | 126]) + len(payload).to_bytes(2, "big") + b"\0\0\0\0" + payload)  # masked
    await writer.drain()
    await asyncio.wait_for(left.wait(), 5)  # closed for the missing pong, and on_leave ran
    assert app.stream_hub.subscribers == 0
    writer.close()
