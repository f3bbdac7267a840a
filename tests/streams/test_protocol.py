"""The wire protocol as tables: client frames parsed or refused, server messages built (SPEC 10.3/10.4)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from motia.exceptions import StreamProtocolError
from motia.state.backends.types import StreamChange
from motia.streams import protocol
from motia.streams.protocol import ClientRequest, change_message, error_message, parse_frame, sync_message

JOIN = {"streamName": "todo", "groupId": "inbox", "subscriptionId": "s1"}


def frame(kind: Any = "join", **data: Any) -> bytes:
    return orjson.dumps({"type": kind, "data": {**JOIN, **data}})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (frame(), ClientRequest("join", "todo", "inbox", None, "s1", None)),
        (frame(id="t1"), ClientRequest("join", "todo", "inbox", "t1", "s1", None)),
        (frame(id=None), ClientRequest("join", "todo", "inbox", None, "s1", None)),
        (frame(since=0), ClientRequest("join", "todo", "inbox", None, "s1", 0)),
        (frame(id="t1", since=42), ClientRequest("join", "todo", "inbox", "t1", "s1", 42)),
        (frame("leave", id="t1"), ClientRequest("leave", "todo", "inbox", "t1", "s1", None)),
        # A leave is found by its subscription id: the rest may be missing.
        (b'{"type":"leave","data":{"subscriptionId":"s9"}}', ClientRequest("leave", "", "", None, "s9", None)),
        # Text frames and unknown extra members (clients may add some) are accepted.
        (frame().decode(), ClientRequest("join", "todo", "inbox", None, "s1", None)),
        (
            b'{"type":"join","data":{"streamName":"todo","groupId":"g","subscriptionId":"s","x":1},"extra":true}',
            ClientRequest("join", "todo", "g", None, "s", None),
        ),
    ],
)
def test_valid_frames_are_parsed(raw: bytes | str, expected: ClientRequest) -> None:
    assert parse_frame(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "must be a JSON object, not list"),
        (b'"join"', "must be a JSON object, not str"),
        (b'{"data": {}}', '"type" must be "join" or "leave", not None'),
        (b'{"type": "subscribe", "data": {}}', "not 'subscribe'"),
        (b'{"type": "join"}', '"data" must be a JSON object, not null'),
        (b'{"type": "join", "data": [1]}', '"data" must be a JSON object, not list'),
        (frame(subscriptionId=None), '"subscriptionId" must be a non-empty string'),
        (frame(subscriptionId=""), '"subscriptionId" must be a non-empty string'),
        (frame(subscriptionId=7), '"subscriptionId" must be a non-empty string, not 7'),
        (frame(subscriptionId="s" * 257), "longer than 256"),
        (frame("leave", subscriptionId=None), "invalid leave"),
        (frame(streamName=None), '"streamName"'),
        (frame(streamName=""), "must not be empty"),
        (frame(streamName="a b"), "may hold only"),
        (frame(groupId=None), '"groupId" must be a str'),
        (frame(groupId=""), '"groupId" must not be empty'),
        (frame(groupId=3), '"groupId" must be a str, not int'),
        (frame(groupId="g" * 1025), "limit is 1024"),
        (frame(id=5), '"id" must be a str'),
        (frame(id=""), '"id" must not be empty'),
        (frame(since=-1), '"since" must be a non-negative integer'),
        (frame(since=1.5), '"since" must be a non-negative integer'),
        (frame(since="3"), '"since" must be a non-negative integer'),
        (frame(since=True), '"since" must be a non-negative integer'),
    ],
)
def test_malformed_frames_are_refused_saying_why(raw: bytes, message: str) -> None:
    with pytest.raises(StreamProtocolError) as caught:
        parse_frame(raw)
    assert message in str(caught.value)
    assert caught.value.code == protocol.INVALID_MESSAGE


def test_a_refused_join_keeps_what_it_could_read_so_the_error_reaches_the_subscription() -> None:
    with pytest.raises(StreamProtocolError) as caught:
        parse_frame(frame(id="t1", since=-3))
    error = caught.value
    assert (error.stream_name, error.group_id, error.item_id, error.subscription_id) == ("todo", "inbox", "t1", "s1")
    answer = orjson.loads(protocol.protocol_error_message(error).stamp(5))
    assert answer == {
        "type": "stream",
        "timestamp": 5,
        "streamName": "todo",
        "groupId": "inbox",
        "id": "t1",
        "event": {
            "type": "error",
            "data": {"code": "INVALID_MESSAGE", "message": str(error), "subscriptionId": "s1"},
        },
    }


def test_oversized_frames_are_refused_before_parsing() -> None:
    big = frame(groupId="g" * 100)
    with pytest.raises(StreamProtocolError) as caught:
        parse_frame(big, max_bytes=len(big) - 1)
    assert caught.value.code == protocol.MESSAGE_TOO_LARGE
    assert f"{len(big)} bytes; the limit is {len(big) - 1}" in str(caught.value)
    assert parse_frame(big, max_bytes=len(big)).group_id == "g" * 100
    # Text frames count their UTF-8 bytes, not characters.
    text = frame(groupId="é" * 40).decode()
    with pytest.raises(StreamProtocolError):
        parse_frame(text, max_bytes=len(text) + 39)


def change(kind: str, item: str | None, old: bytes | None, new: bytes | None, seq: int = 7) -> StreamChange:
    return StreamChange(99, "todo", "inbox", item, seq, kind, old, new, 1.5)


OLD = b'{"id":"t1","title":"old"}'
NEW = b'{"id":"t1","title":"new"}'


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (change("create", "t1", None, NEW), {"id": "t1", "event": {"type": "create", "data": orjson.loads(NEW)}}),
        (change("update", "t1", OLD, NEW), {"id": "t1", "event": {"type": "update", "data": orjson.loads(NEW)}}),
        (change("delete", "t1", OLD, None), {"id": "t1", "event": {"type": "delete", "data": orjson.loads(OLD)}}),
        (
            change("event", None, None, b'{"type":"typing","data":{"who":"ann"}}'),
            {"event": {"type": "event", "event": {"type": "typing", "data": {"who": "ann"}}}},
        ),
        (
            change("event", "t1", None, b'{"type":"ping","data":null}'),
            {"id": "t1", "event": {"type": "event", "event": {"type": "ping", "data": None}}},
        ),
    ],
)
def test_change_messages(stored: StreamChange, expected: dict[str, Any]) -> None:
    message = change_message(stored)
    assert (message.event, message.seq) == (stored.kind, 7)
    assert orjson.loads(message.stamp(1234)) == {
        "type": "stream",
        "timestamp": 1234,
        "streamName": "todo",
        "groupId": "inbox",
        "seq": 7,
        **expected,
    }


def test_change_messages_embed_the_stored_bytes_unchanged() -> None:
    # Key order, spacing and number spelling as stored: proof that nothing was decoded and encoded again.
    stored = b'{"z": 1.50, "id": "t1",   "a": [1,2]}'
    text = change_message(change("create", "t1", None, stored)).stamp(1)
    assert stored.decode() in text
    assert text.startswith('{"type":"stream","timestamp":1,"streamName":"todo"')


def test_unknown_change_kinds_are_a_bug_not_a_message() -> None:
    with pytest.raises(ValueError, match="unknown stream change kind"):
        change_message(change("rename", "t1", None, NEW))


def test_sync_messages() -> None:
    group = orjson.loads(sync_message("todo", "inbox", None, 12, [OLD, NEW]).stamp(3))
    assert group == {
        "type": "stream",
        "timestamp": 3,
        "streamName": "todo",
        "groupId": "inbox",
        "seq": 12,
        "event": {"type": "sync", "data": [orjson.loads(OLD), orjson.loads(NEW)]},
    }
    assert "id" not in group  # Motia's clients route an id-less sync to group subscriptions only
    item = orjson.loads(sync_message("todo", "inbox", "t1", 12, NEW).stamp(3))
    assert (item["id"], item["event"]) == ("t1", {"type": "sync", "data": orjson.loads(NEW)})
    absent = orjson.loads(sync_message("todo", "inbox", "t9", 0, None).stamp(3))
    assert absent["event"] == {"type": "sync", "data": None}
    empty = orjson.loads(sync_message("todo", "inbox", None, 0, []).stamp(3))
    assert empty["event"] == {"type": "sync", "data": []}
    reset = orjson.loads(sync_message("todo", "inbox", None, 40, [NEW], reset=True).stamp(3))
    assert reset["event"] == {"type": "sync", "data": [orjson.loads(NEW)], "reset": True}
    message = sync_message("todo", "inbox", None, 40, [])
    assert (message.event, message.seq) == ("sync", 40)


def test_sync_messages_refuse_data_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="group sync"):
        sync_message("todo", "inbox", None, 1, NEW)
    with pytest.raises(ValueError, match="item sync"):
        sync_message("todo", "inbox", "t1", 1, [NEW])


def test_error_messages() -> None:
    message = error_message(
        protocol.STREAM_ACCESS_DENIED, "access denied", stream_name="todo", group_id="g", subscription_id="s1"
    )
    assert (message.event, message.seq) == ("error", None)
    assert orjson.loads(message.stamp(9)) == {
        "type": "stream",
        "timestamp": 9,
        "streamName": "todo",
        "groupId": "g",
        "event": {
            "type": "error",
            "data": {"code": "STREAM_ACCESS_DENIED", "message": "access denied", "subscriptionId": "s1"},
        },
    }
    anonymous = orjson.loads(error_message(protocol.INVALID_MESSAGE, "bad").stamp(1))
    assert (anonymous["streamName"], anonymous["groupId"], "id" in anonymous) == ("", "", False)
    assert anonymous["event"]["data"] == {"code": "INVALID_MESSAGE", "message": "bad"}
