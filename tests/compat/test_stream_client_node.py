"""Motia's own Node stream client, unchanged, against a real ``motia run`` (SPEC 10.3), on every backend.

The client (``@motiadev/stream-client-node`` 0.17.x) routes a message by its ``id`` to the item room and, for
changes, to the group room as well; its item subscription drops a message whose ``timestamp`` is not newer
than the last one, its group subscription an update not newer than the last one for that item. So the
server must send each change once per socket, with timestamps that strictly increase.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from motia.state.urls import open_backend
from motia.streams import StreamDefinition, StreamManager
from tests.compat.conftest import HERE
from tests.compat.node_client import NodeClient, ensure_installed
from tests.e2e.motia_proc import REPO, MotiaProcess, free_port

pytestmark = pytest.mark.slow

STEPS = HERE / "streams_project" / "steps"
GROUP = "inbox"
ITEM = "t1"
BURST = 10


@pytest.fixture(scope="module")
def node() -> str:
    return ensure_installed()


@pytest.fixture
def clients() -> Iterator[list[NodeClient]]:
    started: list[NodeClient] = []
    yield started
    for client in started:
        client.kill()


def both_synced(client: NodeClient, group: list[dict[str, Any]], item: dict[str, Any] | None, timeout: float = 10.0):
    """Wait until the group and the item subscription have each reported their expected state (their
    syncs come in the order the joins are answered, so either may come first)."""
    seen: set[str] = set()

    def check(line: dict[str, Any]) -> bool:
        expected = {"group": group, "item": item}
        if line["kind"] in expected and line["state"] == expected[line["kind"]]:
            seen.add(line["kind"])
        return seen == {"group", "item"}

    client.expect(f"group state {group!r} and item state {item!r}", check, timeout)


def todo(item_id: str, title: str, **fields: Any) -> dict[str, Any]:
    """The item as stored: the body written, plus its ``id`` (a schema's defaults are not filled in)."""
    return {"title": title, **fields, "id": item_id}


def test_the_motia_node_client_sees_sync_every_change_and_events_once(node, run_motia, clients, state_url):
    server = run_motia(STEPS, state=state_url).wait_ready()
    api = httpx.Client(base_url=server.url, timeout=10)

    def ok(response: httpx.Response) -> Any:
        assert response.status_code < 300, response.text
        return response.json()

    # Given a group holding two items before the client connects
    ok(api.put(f"/todo/{GROUP}/t1", json={"title": "write tests"}))
    ok(api.put(f"/todo/{GROUP}/t0", json={"title": "read the client", "done": True}))
    t0, t1 = todo("t0", "read the client", done=True), todo("t1", "write tests")

    # When Motia's Node client subscribes to the group and to item t1 (at "/", where Motia's clients connect)
    ws_url = server.url.replace("http://", "ws://") + "/"
    client = NodeClient(node, ws_url, "todo", GROUP, ITEM, ["nudge", "done"])
    clients.append(client)

    # Then each subscription gets its initial sync: the group's items in id order, and the item
    both_synced(client, [t0, t1], t1)

    # A create reaches the group (and no item subscription: it is another item)
    ok(api.put(f"/todo/{GROUP}/t2", json={"title": "ship"}))
    t2 = todo("t2", "ship")
    client.state("group", [t0, t1, t2])

    # An update by set, then one by update operations, reach both subscriptions
    ok(api.put(f"/todo/{GROUP}/t1", json={"title": "write more tests"}))
    client.state("item", todo("t1", "write more tests"))
    client.state("group", [t0, todo("t1", "write more tests"), t2])
    ok(api.patch(f"/todo/{GROUP}/t1", json=[{"type": "set", "path": "done", "value": True}]))
    client.state("item", todo("t1", "write more tests", done=True))
    client.state("group", [t0, todo("t1", "write more tests", done=True), t2])

    # A custom event to the group reaches the group's listener; one to the item reaches both listeners
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "nudge", "data": {"to": "group"}}))
    group_only = {"kind": "group-event", "type": "nudge", "data": {"to": "group"}}
    client.expect("the group event", lambda line: line == group_only)
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "nudge", "data": {"to": "t1"}, "id": ITEM}))
    item_event = {"kind": "item-event", "type": "nudge", "data": {"to": "t1"}}
    group_event = {"kind": "group-event", "type": "nudge", "data": {"to": "t1"}}
    client.expect("the item event at the item", lambda line: line == item_event)
    client.expect("the item event at the group", lambda line: line == group_event)

    # Changes made back to back, several within one millisecond, all reach the item subscription, in order
    stamps = ok(api.post(f"/todo/{GROUP}/{ITEM}/burst", json={"count": BURST}))["ms"]
    for n in range(BURST):
        client.state("item", todo("t1", f"burst {n}"))
    client.state("group", [t0, todo("t1", f"burst {BURST - 1}"), t2])
    burst_states = [
        line["state"]["title"] for line in client.of_kind("item") if line["state"]["title"].startswith("burst")
    ]
    assert burst_states == [f"burst {n}" for n in range(BURST)]

    # Deletes reach the group, and the item subscription sees its item gone
    ok(api.delete(f"/todo/{GROUP}/t2"))
    client.state("group", [t0, todo("t1", f"burst {BURST - 1}")])
    ok(api.delete(f"/todo/{GROUP}/t1"))
    client.state("item", None)
    client.state("group", [t0])

    # A last event marks the end: everything sent before it on the socket has arrived
    ok(api.post(f"/todo/{GROUP}/events", json={"type": "done", "data": None}))
    client.expect("the closing event", lambda line: line == {"kind": "group-event", "type": "done", "data": None})
    client.close()
    api.close()
    assert server.stop() == 0

    raw = client.raw()
    changes = [message for message in raw if message["event"]["type"] != "sync"]
    kinds = [(message["event"]["type"], message.get("id")) for message in raw]
    # exactly one message per change (and per sync) on the socket: nothing arrived twice, nothing extra
    assert kinds.count(("sync", None)) == 1 and kinds.count(("sync", ITEM)) == 1, kinds
    assert sorted(kinds[2:], key=str) == sorted(
        [("create", "t2"), ("update", "t1"), ("update", "t1"), ("event", None), ("event", ITEM)]
        + [("update", "t1")] * BURST
        + [("delete", "t2"), ("delete", "t1"), ("event", None)],
        key=str,
    ), kinds
    for message in raw:
        assert message["type"] == "stream" and message["streamName"] == "todo" and message["groupId"] == GROUP
    # the delete carries the old item (the client finds it by data.id)
    assert [m["event"]["data"] for m in changes if m["event"]["type"] == "delete"] == [
        todo("t2", "ship"),
        todo("t1", f"burst {BURST - 1}"),
    ]
    # timestamps strictly increase on the socket, although some changes shared a millisecond
    timestamps = [message["timestamp"] for message in raw]
    assert all(a < b for a, b in zip(timestamps, timestamps[1:], strict=False)), timestamps
    if state_url == "memory://":  # writes of microseconds: the burst surely shares a millisecond (elsewhere,
        # on a loaded machine, a SQLite or Redis write may take a millisecond each)
        assert any(a == b for a, b in zip(stamps, stamps[1:], strict=False)), f"no two writes in one ms: {stamps}"
    # seq increases with every change of the group (events included), committed order
    seqs = [message["seq"] for message in changes]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    # no item state was reported twice in a row for one message, and the client never reconnected
    assert client.of_kind("close") == [] and client.of_kind("error") == [], client.transcript()


def write_offline(url: str, group: str, item: str, data: dict[str, Any]) -> None:
    """Write an item straight to the store, while no server runs (as a script or ``motia state`` would)."""

    async def write() -> None:
        backend = open_backend(url)
        try:
            await StreamManager(backend, [StreamDefinition("todo")]).set("todo", group, item, data)
        finally:
            await backend.aclose()

    asyncio.run(write())


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def durable_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A store that outlives the server: a SQLite file, or a fresh prefix (schema) on the shared Redis
    (PostgreSQL) test server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    if request.param == "postgres":
        return f"{request.getfixturevalue('postgres_server').url}?schema=node_{uuid.uuid4().hex[:12]}"
    return f"{request.getfixturevalue('redis_server').url}?prefix=node-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def servers() -> Iterator[list[MotiaProcess]]:
    """``motia run`` processes started on a chosen port, killed at the end of the test if still running."""
    started: list[MotiaProcess] = []
    yield started
    for server in started:
        server.kill()


def test_the_motia_node_client_resyncs_after_the_server_restarts(node, clients, servers, tmp_path, durable_url):
    # Given a client subscribed through a server on a durable store, that has seen a burst of changes
    url = durable_url
    port = free_port()
    args = ["run", "--port", str(port), "--dir", str(STEPS), "--state", url]
    server = MotiaProcess(args, cwd=REPO, log_path=tmp_path / "first.log", port=port)
    servers.append(server)
    server.wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        assert api.put(f"/todo/{GROUP}/{ITEM}", json={"title": "before"}).status_code == 200
        client = NodeClient(node, server.url.replace("http://", "ws://"), "todo", GROUP, ITEM, ["nudge"])
        clients.append(client)
        client.state("item", todo(ITEM, "before"))
        assert api.post(f"/todo/{GROUP}/{ITEM}/burst", json={"count": BURST}).status_code == 200
        client.state("item", todo(ITEM, f"burst {BURST - 1}"))

    # When the server stops, the item changes while it is down, and a new server starts on the same port
    assert server.stop() == 0
    client.expect("the socket closing", lambda line: line["kind"] == "close")
    write_offline(url, GROUP, ITEM, {"title": "changed while down"})
    write_offline(url, GROUP, "t9", {"title": "added while down"})
    restarted = MotiaProcess(args, cwd=REPO, log_path=tmp_path / "second.log", port=port)
    servers.append(restarted)
    restarted.wait_ready()

    # Then the client reconnects by itself (after 2 s), joins again and takes the new syncs: their
    # timestamps are newer than everything the old socket sent, or the client would drop them
    changed = todo(ITEM, "changed while down")
    both_synced(client, [changed, todo("t9", "added while down")], changed, timeout=20)
    client.close()
    assert restarted.stop() == 0


AUTH_CONFIG = """
def stream_authenticate(request):
    if request.token != "s3cret-token":
        raise PermissionError("bad token")
    return {"user": "ann"}
"""


def test_the_motia_node_client_authenticates_with_its_protocols_option(node, run_motia, clients, tmp_path):
    # Given a project whose motia_config.py wants a token, and a stream that refuses group "forbidden"
    (tmp_path / "motia_config.py").write_text(AUTH_CONFIG)
    server = run_motia(STEPS, state="memory://", cwd=tmp_path).wait_ready()
    with httpx.Client(base_url=server.url, timeout=10) as api:
        assert api.put(f"/todo/{GROUP}/{ITEM}", json={"title": "secret plans"}).status_code == 200
        assert api.put(f"/todo/forbidden/{ITEM}", json={"title": "not for you"}).status_code == 200
    ws_url = server.url.replace("http://", "ws://")

    # When the client offers the token as its README shows (protocols: ['Authorization', token]),
    # the server selects the subprotocol (or `ws` would fail the handshake) and the joins are served
    allowed = NodeClient(node, ws_url, "todo", GROUP, ITEM, ["nudge"], token="s3cret-token")
    clients.append(allowed)
    both_synced(allowed, [todo(ITEM, "secret plans")], todo(ITEM, "secret plans"))

    # A wrong token: the socket is closed with 4401 before any message
    refused = NodeClient(node, ws_url, "todo", GROUP, ITEM, ["nudge"], token="wrong")
    clients.append(refused)
    closed = refused.expect("the refusal", lambda line: line["kind"] == "close")
    assert closed["code"] == 4401, refused.transcript()
    assert refused.raw() == []

    # A join can_access refuses gets STREAM_ACCESS_DENIED for each subscription and no data
    # (SPEC's error message, then Motia 0.17's custom "error" event, which the client hands to onEvent)
    denied = NodeClient(node, ws_url, "todo", "forbidden", ITEM, ["nudge", "error"], token="s3cret-token")
    clients.append(denied)
    for _ in range(4):
        denied.expect("a refusal", lambda line: line["kind"] == "raw")
    codes = sorted(
        (m.get("id") or "", m["event"]["type"], (m["event"].get("data") or m["event"]["event"]["data"])["code"])
        for m in denied.raw()
    )
    assert codes == [
        ("", "error", "STREAM_ACCESS_DENIED"),
        ("", "event", "STREAM_ACCESS_DENIED"),
        (ITEM, "error", "STREAM_ACCESS_DENIED"),
        (ITEM, "event", "STREAM_ACCESS_DENIED"),
    ], codes
    denied.expect("the item's onEvent('error')", lambda line: line["kind"] == "item-event")
    errors = [
        (line["kind"], line["type"], line["data"]["code"]) for line in denied.lines if line["kind"].endswith("-event")
    ]
    # Each subscription's listener gets its own refusal
    assert sorted(errors) == [
        ("group-event", "error", "STREAM_ACCESS_DENIED"),
        ("item-event", "error", "STREAM_ACCESS_DENIED"),
    ], denied.transcript()
    assert denied.of_kind("group") == [] and denied.of_kind("item") == []
    for client in (allowed, denied):
        client.close()
    refused.kill()
