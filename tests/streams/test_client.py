"""``StreamClient`` against the real stream server (uvicorn on a loopback port, in this event loop).

Connection drops are made by a TCP proxy the test owns (``tests/streams/proxy.py``): the server is never
told, exactly as when a network path breaks.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest

from motia.exceptions import (
    StreamAccessDeniedError,
    StreamAuthError,
    StreamConnectionError,
    StreamError,
    StreamNotFoundError,
)
from motia.runtime.app import MotiaApp
from motia.state.manager import StateManager
from motia.streams import StreamClient
from motia.streams.client import StreamChangeMessage, StreamClientSubscription
from motia.streams.config import StreamConfig, definition_from_config
from tests.streams.proxy import Proxy
from tests.streams.serving import serving

STEP_TIMEOUT = 10.0


def _deny(subscription: Any, auth_context: Any) -> bool:
    return subscription.group_id != "secret"


def _app(state: StateManager, *, history: int = 1000) -> MotiaApp:
    streams = [
        definition_from_config(StreamConfig(name="todo", history=history)),
        definition_from_config(StreamConfig(name="guarded", can_access=_deny)),
    ]
    return MotiaApp([], state=state, streams=streams)


@pytest.fixture
async def app(stream_state: StateManager) -> MotiaApp:
    return _app(stream_state)


@pytest.fixture
async def port(app: MotiaApp) -> AsyncIterator[int]:
    async with serving(app) as port:
        yield port


@pytest.fixture
async def proxy(port: int) -> AsyncIterator[Proxy]:
    proxy = await Proxy.start(port)
    yield proxy
    await proxy.close()


async def next_change(sub: StreamClientSubscription) -> StreamChangeMessage:
    return await asyncio.wait_for(anext(sub), STEP_TIMEOUT)


async def test_group_subscription_gets_the_sync_then_every_change_in_order(app: MotiaApp, port: int) -> None:
    # Given a group with two items
    await app.streams.set("todo", "inbox", "a", {"title": "A"})
    await app.streams.set("todo", "inbox", "b", {"title": "B"})
    async with StreamClient(f"ws://127.0.0.1:{port}") as client:
        async with client.subscribe_group("todo", "inbox") as sub:
            # When a client subscribes to the group
            sync = await next_change(sub)
            # Then it first gets both items and the group's seq
            assert (sync.type, sync.seq, sync.reset) == ("sync", 2, False)
            assert sync.items == [{"title": "A", "id": "a"}, {"title": "B", "id": "b"}]
            # And then each change, once, in commit order, with the next seq
            await app.streams.set("todo", "inbox", "c", {"title": "C"})
            await app.streams.update("todo", "inbox", "a", [{"type": "set", "path": "title", "value": "A2"}])
            await app.streams.delete("todo", "inbox", "b")
            await app.streams.send("todo", {"groupId": "inbox"}, {"type": "typing", "data": {"who": "ann"}})
            await app.streams.set("todo", "other", "x", {"title": "elsewhere"})  # another group: never seen
            await app.streams.set("todo", "inbox", "d", {"title": "D"})
            changes = [await next_change(sub) for _ in range(5)]
    assert [(c.type, c.id, c.seq) for c in changes] == [
        ("create", "c", 3),
        ("update", "a", 4),
        ("delete", "b", 5),
        ("event", None, 6),
        ("create", "d", 7),
    ]
    assert changes[0].data == {"title": "C", "id": "c"}
    assert changes[1].data == {"title": "A2", "id": "a"}
    assert changes[2].data == {"title": "B", "id": "b"}  # delete carries the item as it was
    assert (changes[3].event_type, changes[3].data) == ("typing", {"who": "ann"})
    assert all(c.stream_name == "todo" and c.group_id == "inbox" for c in changes)
    timestamps = [c.timestamp for c in changes]
    assert all(isinstance(t, int) for t in timestamps) and timestamps == sorted(set(timestamps))  # type: ignore[type-var]


async def test_item_subscription_sees_only_its_item(app: MotiaApp, port: int) -> None:
    await app.streams.set("todo", "inbox", "a", {"title": "A"})
    async with StreamClient(f"http://127.0.0.1:{port}/__motia/streams") as client:
        async with client.subscribe_item("todo", "inbox", "a") as sub:
            sync = await next_change(sub)
            assert (sync.type, sync.id, sync.data, sync.seq) == ("sync", "a", {"title": "A", "id": "a"}, 1)
            await app.streams.set("todo", "inbox", "b", {"title": "not mine"})
            await app.streams.send("todo", {"groupId": "inbox", "id": "a"}, {"type": "ping", "data": 1})
            await app.streams.set("todo", "inbox", "a", {"title": "A2"})
            first, second = await next_change(sub), await next_change(sub)
    assert (first.type, first.id, first.event_type, first.data, first.seq) == ("event", "a", "ping", 1, 3)
    assert (second.type, second.id, second.data, second.seq) == ("update", "a", {"title": "A2", "id": "a"}, 4)


async def test_a_dropped_connection_resumes_with_exactly_the_missed_changes(app: MotiaApp, proxy: Proxy) -> None:
    # Given a subscriber connected through a proxy, synced
    await app.streams.set("todo", "inbox", "a", {"n": 0})
    async with StreamClient(proxy.url, backoff=0.02, max_backoff=0.2) as client:
        async with client.subscribe_group("todo", "inbox") as sub:
            assert (await next_change(sub)).seq == 1
            await app.streams.set("todo", "inbox", "a", {"n": 1})
            assert (await next_change(sub)).seq == 2
            # When the network drops it and refuses new connections while three changes are made
            proxy.refusing = True
            assert proxy.drop() > 0
            for n in range(2, 5):
                await app.streams.set("todo", "inbox", "a", {"n": n})
            proxy.refusing = False
            # Then, reconnected, it gets exactly those three, in order, with no sync and nothing twice
            missed = [await next_change(sub) for _ in range(3)]
            await app.streams.set("todo", "inbox", "a", {"n": 5})
            after = await next_change(sub)
            assert sub.reconnects >= 1
    assert [(c.type, c.seq, c.data["n"]) for c in missed] == [("update", 3, 2), ("update", 4, 3), ("update", 5, 4)]
    assert (after.type, after.seq, after.data["n"]) == ("update", 6, 5)
    assert proxy.accepted >= 2


async def test_a_resume_past_the_history_gets_a_reset_sync(stream_state: StateManager) -> None:
    # Given a stream keeping (at least) the last 2 changes of a group
    app = _app(stream_state, history=2)
    async with serving(app) as port:
        proxy = await Proxy.start(port)
        try:
            await app.streams.set("todo", "g", "a", {"n": 0})
            async with StreamClient(proxy.url, backoff=0.02, max_backoff=0.2) as client:
                async with client.subscribe_group("todo", "g") as sub:
                    assert (await next_change(sub)).seq == 1
                    # When five changes happen while it is cut off
                    proxy.refusing = True
                    proxy.drop()
                    for n in range(1, 4):
                        await app.streams.set("todo", "g", "a", {"n": n})
                    await app.streams.set("todo", "g", "b", {"n": 9})
                    await app.streams.delete("todo", "g", "b")
                    proxy.refusing = False
                    # Then it gets a full sync flagged reset, at the current seq (or, from a store that kept
                    # more than asked, as SQLite and Redis may, the whole replay), then live changes
                    first = await next_change(sub)
                    rest = [] if first.type == "sync" else [await next_change(sub) for _ in range(4)]
                    await app.streams.set("todo", "g", "c", {"n": 10})
                    live = await next_change(sub)
        finally:
            await proxy.close()
    if stream_state.url.startswith("memory") or first.type == "sync":
        assert (first.type, first.reset, first.seq, first.items) == ("sync", True, 6, [{"n": 3, "id": "a"}])
    else:
        assert [(c.type, c.seq) for c in [first, *rest]] == [
            ("update", 2),
            ("update", 3),
            ("update", 4),
            ("create", 5),
            ("delete", 6),
        ]
    assert (live.type, live.id, live.seq) == ("create", "c", 7)


async def test_a_cursor_the_store_never_reached_resets(app: MotiaApp, port: int) -> None:
    # Given a client holding a seq from another store (the server came back on a fresh one)
    await app.streams.set("todo", "g", "a", {"n": 0})
    async with StreamClient(f"ws://127.0.0.1:{port}") as client:
        async with client.subscribe_group("todo", "g", since=99) as sub:
            # Then its resume is a reset sync of what the store holds, and it follows from there
            reset = await next_change(sub)
            await app.streams.set("todo", "g", "a", {"n": 1})
            live = await next_change(sub)
    assert (reset.type, reset.reset, reset.seq, reset.items) == ("sync", True, 1, [{"n": 0, "id": "a"}])
    assert (live.type, live.seq, sub.last_seq) == ("update", 2, 2)


async def test_given_since_it_replays_instead_of_syncing(app: MotiaApp, port: int) -> None:
    for n in range(4):
        await app.streams.set("todo", "g", "a", {"n": n})
    async with StreamClient(f"ws://127.0.0.1:{port}") as client:
        async with client.subscribe_group("todo", "g", since=2) as sub:
            replay = [await next_change(sub), await next_change(sub)]
    assert [(c.type, c.seq, c.data["n"]) for c in replay] == [("update", 3, 2), ("update", 4, 3)]


async def test_denied_access_raises_and_does_not_reconnect(app: MotiaApp, proxy: Proxy) -> None:
    await app.streams.set("guarded", "secret", "a", {"x": 1})
    async with StreamClient(proxy.url, backoff=0.01) as client:
        async with client.subscribe_group("guarded", "secret") as sub:
            with pytest.raises(StreamAccessDeniedError, match="STREAM_ACCESS_DENIED"):
                await next_change(sub)
            # The iterator is over: no second attempt is made
            with pytest.raises(StopAsyncIteration):
                await next_change(sub)
        # And an allowed group of the same stream works
        async with client.subscribe_group("guarded", "open") as sub:
            assert (await next_change(sub)).type == "sync"
    assert proxy.accepted == 2


async def test_an_unreachable_server_fails_the_first_connection_clearly(proxy: Proxy) -> None:
    proxy.refusing = True
    async with StreamClient(proxy.url) as client:
        with pytest.raises(StreamConnectionError, match="cannot connect"):
            async with client.subscribe_group("todo", "g"):
                pass


async def test_bounded_reconnects_give_up_with_a_clear_error(app: MotiaApp, proxy: Proxy) -> None:
    async with StreamClient(proxy.url, reconnect_attempts=2, backoff=0.01, max_backoff=0.02) as client:
        async with client.subscribe_group("todo", "g") as sub:
            assert (await next_change(sub)).type == "sync"
            proxy.refusing = True
            proxy.drop()
            with pytest.raises(StreamConnectionError, match="after 2 attempt"):
                await next_change(sub)


async def test_aclose_ends_a_waiting_iteration(app: MotiaApp, port: int) -> None:
    client = StreamClient(f"ws://127.0.0.1:{port}")
    async with client.subscribe_group("todo", "g") as sub:
        assert (await next_change(sub)).type == "sync"
        waiting = asyncio.create_task(anext(sub, None))
        await asyncio.sleep(0)  # let it start waiting: closing must end it, not leave it hanging
        await client.aclose()
        assert await asyncio.wait_for(waiting, STEP_TIMEOUT) is None
    with pytest.raises(StreamConnectionError, match="closed"):
        async with client.subscribe_group("todo", "g"):
            pass


def test_urls_are_checked() -> None:
    assert StreamClient("http://h:1").url == "ws://h:1/"
    assert StreamClient("https://h/x").url == "wss://h/x"
    with pytest.raises(ValueError, match="ws://"):
        StreamClient("ftp://h")
    assert "s3cret" not in repr(StreamClient("ws://h", token="s3cret"))


async def test_a_restarted_server_is_resumed_from_on_the_same_store(stream_state: StateManager) -> None:
    # Given a subscriber of a server on a store that outlives it
    first = _app(stream_state)
    async with serving(first) as port:
        await first.streams.set("todo", "g", "a", {"n": 0})
        client = StreamClient(f"ws://127.0.0.1:{port}", backoff=0.02, max_backoff=0.2)
        sub = await client.subscribe_group("todo", "g").__aenter__()
        sync = await next_change(sub)
        assert (sync.type, sync.seq) == ("sync", 1)
    try:
        # When the server stops, changes are made to the store meanwhile, and a new server starts there
        second = _app(stream_state)
        await second.streams.set("todo", "g", "a", {"n": 1})
        await second.streams.send("todo", {"groupId": "g"}, {"type": "note", "data": "while down"})
        async with serving(second, port=port):
            # Then the client reconnects by itself and gets exactly what it missed, then live changes
            missed = [await next_change(sub), await next_change(sub)]
            await second.streams.delete("todo", "g", "a")
            live = await next_change(sub)
    finally:
        await client.aclose()
    assert [(c.type, c.seq) for c in missed] == [("update", 2), ("event", 3)]
    assert (missed[1].event_type, missed[1].data) == ("note", "while down")
    assert (live.type, live.seq, live.data) == ("delete", 4, {"n": 1, "id": "a"})
    assert sub.reconnects >= 1


def _authenticate(request: Any) -> Any:
    if request.token != "good":
        raise PermissionError("no")
    return {"user": "ann"}


@pytest.mark.parametrize("token", [None, "bad"])
async def test_refused_credentials_raise_and_do_not_reconnect(stream_state: StateManager, token: str | None) -> None:
    app = MotiaApp(
        [],
        state=stream_state,
        streams=[definition_from_config(StreamConfig(name="todo"))],
        stream_authenticate=_authenticate,
    )
    async with serving(app) as port:
        proxy = await Proxy.start(port)
        try:
            async with StreamClient(proxy.url, token, backoff=0.01) as client:
                with pytest.raises(StreamAuthError, match="4401"):
                    async with client.subscribe_group("todo", "g") as sub:
                        await next_change(sub)
            assert proxy.accepted == 1  # one attempt: a refusal is not retried
            # And the right token is let in (sent as the Authorization subprotocol)
            async with StreamClient(proxy.url, "good") as client:
                async with client.subscribe_group("todo", "g") as sub:
                    assert (await next_change(sub)).type == "sync"
        finally:
            await proxy.close()


def test_the_client_imports_websockets_only_when_it_connects() -> None:
    # Given a fresh interpreter, When it imports motia and builds a StreamClient and a subscription
    code = textwrap.dedent(
        """
        import sys
        import motia
        from motia.streams import StreamClient
        client = StreamClient("ws://127.0.0.1:1")
        client.subscribe_group("todo", "g")
        print(sorted(m for m in ("websockets", "starlette", "uvicorn", "redis", "click") if m in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # Then none of the server-side or optional packages was imported
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


async def test_an_unknown_stream_raises_and_does_not_reconnect(proxy: Proxy) -> None:
    async with StreamClient(proxy.url, backoff=0.01) as client:
        async with client.subscribe_group("nope", "g") as sub:
            with pytest.raises(StreamNotFoundError, match="nope"):
                await next_change(sub)
    assert proxy.accepted == 1


async def test_a_consumer_that_stops_iterating_is_dropped_and_catches_up_exactly(stream_state: StateManager) -> None:
    # Given a server that drops a connection with more than 20 messages waiting, and a synced subscriber
    app = _app(stream_state)
    app.stream_hub.queue_limit = 20
    async with serving(app) as port:
        async with StreamClient(f"ws://127.0.0.1:{port}", backoff=0.02, max_backoff=0.2) as client:
            async with client.subscribe_group("todo", "g") as sub:
                assert (await next_change(sub)).type == "sync"
                # When it stops iterating while changes of 50 KB are written, until the server drops it
                # (random data: the WebSocket compresses, and a repeated blob would cost the buffers nothing)
                written = 0
                while app.stream_hub.subscribers and written < 2000:
                    blob = os.urandom(25_000).hex()
                    await app.streams.set("todo", "g", f"i{written % 7}", {"n": written, "blob": blob})
                    written += 1
                    await asyncio.sleep(0)  # let the server's writer run between writes, as over a network
                assert not app.stream_hub.subscribers, "the subscriber was never dropped as too slow"
                # Then, iterating again, it reconnects by itself and ends with exactly the server's items:
                # every seq once, in order, a gap only where a reset sync replaced everything
                held: dict[str, Any] = {}
                seqs: list[int] = []
                while not seqs or seqs[-1] < written:
                    change = await next_change(sub)
                    assert change.seq is not None
                    if change.type == "sync":
                        assert change.reset and (not seqs or change.seq > seqs[-1])
                        held = {item["id"]: item for item in change.items}
                    else:
                        assert not seqs or change.seq == seqs[-1] + 1, (seqs[-1:], change.seq)
                        held[change.id or ""] = change.data
                    seqs.append(change.seq)
                reconnects = sub.reconnects
            expected = {item["id"]: item for item in await app.streams.get_group("todo", "g")}
    assert held == expected
    assert reconnects >= 1


async def test_a_message_over_the_client_limit_raises_instead_of_reconnecting(app: MotiaApp, proxy: Proxy) -> None:
    # Given a group whose sync is larger than the client accepts
    await app.streams.set("todo", "big", "a", {"blob": "x" * 20_000})
    async with StreamClient(proxy.url, max_message_bytes=10_000, backoff=0.01) as client:
        async with client.subscribe_group("todo", "big") as sub:
            # Then the subscription fails saying so, once (the same sync would be too big every time)
            with pytest.raises(StreamError, match="max_message_bytes=10000"):
                await next_change(sub)
    assert proxy.accepted == 1
