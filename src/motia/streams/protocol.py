"""The stream wire protocol (SPEC 10.3/10.4): client frames parsed, server messages built. Pure: no I/O.

Client → server (Motia's clients send exactly this; ``since`` is pymotia's resume)::

    {"type": "join" | "leave", "data": {"streamName", "groupId", "id"?, "subscriptionId", "since"?}}

Server → client, one JSON text frame per message::

    {"type": "stream", "timestamp": <ms>, "streamName", "groupId", "id"?, "seq"?, "event": E}

with ``E`` one of ``{"type": "sync", "data": item | null | [items], "reset"?: true}``,
``{"type": "create" | "update", "data": item}``, ``{"type": "delete", "data": old item}``,
``{"type": "event", "event": {"type", "data"}}`` and ``{"type": "error", "data": {"code", "message",
"subscriptionId"?}}``.

Routing is Motia's: a message carrying ``id`` is about that item and Motia's clients hand it to their item
subscription *and* their group subscription (except a ``sync``, which only the item subscription takes);
a message without ``id`` is for group subscriptions only. So a group sync has no ``id``, an item sync has
one, and an item change is sent once per socket however many subscriptions match it.

``timestamp`` is left out of the built messages: it must strictly increase per socket (Motia's clients drop
a message that is not newer than the last), so each socket stamps its copy (:meth:`ServerMessage.stamp`).
The rest of a message is encoded once per change, however many sockets receive it, and stored item data is
embedded as the stored bytes (``orjson.Fragment``), never decoded and encoded again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import orjson

from motia.exceptions import ConfigError, StateValueError, StreamProtocolError
from motia.state import values as _values
from motia.state.backends.types import StreamChange
from motia.streams.config import check_stream_name

__all__ = [
    "INVALID_MESSAGE",
    "MAX_FRAME_BYTES",
    "MAX_SUBSCRIPTION_ID_LENGTH",
    "MESSAGE_TOO_LARGE",
    "STREAM_ACCESS_DENIED",
    "STREAM_NOT_FOUND",
    "STREAM_UNAVAILABLE",
    "TOO_MANY_SUBSCRIPTIONS",
    "ClientRequest",
    "ServerMessage",
    "change_message",
    "error_event_message",
    "error_message",
    "protocol_error_message",
    "parse_frame",
    "sync_message",
]

#: Error codes of ``{"type": "error", "data": {"code": ...}}``.
STREAM_ACCESS_DENIED = "STREAM_ACCESS_DENIED"  #: ``can_access`` said no (or raised): no data is sent
STREAM_NOT_FOUND = "STREAM_NOT_FOUND"  #: no stream of that name is declared
INVALID_MESSAGE = "INVALID_MESSAGE"  #: the frame is not a valid join/leave (the message says why)
MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"  #: the frame is larger than the server accepts
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"  #: the socket already holds the most subscriptions allowed
STREAM_UNAVAILABLE = "STREAM_UNAVAILABLE"  #: the store failed while joining; the client may join again

#: The largest client frame accepted (a join is a few hundred bytes).
MAX_FRAME_BYTES = 64 * 1024
MAX_SUBSCRIPTION_ID_LENGTH = 256


class ClientRequest(NamedTuple):
    """A parsed client frame: join (or leave) ``stream_name``/``group_id`` (``item_id``: one item).

    ``since`` (join only) asks for the changes after that ``seq`` instead of a full sync. A leave names
    its subscription by ``subscription_id``; its other fields are what the client sent, possibly empty.
    """

    type: Literal["join", "leave"]
    stream_name: str
    group_id: str
    item_id: str | None
    subscription_id: str
    since: int | None = None


def parse_frame(frame: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> ClientRequest:
    """Parse one client frame (text or binary) into a :class:`ClientRequest`.

    Raises :class:`~motia.exceptions.StreamProtocolError` saying what is wrong, with ``code``
    ``MESSAGE_TOO_LARGE`` (over ``max_bytes``) or ``INVALID_MESSAGE``, and what could be read of the
    subscription (so the answer reaches it).
    """
    size = len(frame.encode("utf-8", "surrogatepass")) if isinstance(frame, str) else len(frame)
    if size > max_bytes:
        raise StreamProtocolError(f"the frame is {size} bytes; the limit is {max_bytes}", code=MESSAGE_TOO_LARGE)
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise StreamProtocolError(f"the frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise StreamProtocolError(f"the frame must be a JSON object, not {_kind(message)}")
    kind = message.get("type")
    if kind not in ("join", "leave"):
        raise StreamProtocolError(f'"type" must be "join" or "leave", not {_show(kind)}')
    data = message.get("data")
    if not isinstance(data, dict):
        raise StreamProtocolError(f'"data" must be a JSON object, not {_kind(data)}')

    raw_stream, raw_group, raw_item, raw_sub = (
        data.get("streamName"),
        data.get("groupId"),
        data.get("id"),
        data.get("subscriptionId"),
    )
    seen_stream = raw_stream if isinstance(raw_stream, str) else None
    seen_group = raw_group if isinstance(raw_group, str) else None
    seen_item = raw_item if isinstance(raw_item, str) else None
    seen_sub = raw_sub if isinstance(raw_sub, str) else None

    def invalid(problem: str) -> StreamProtocolError:
        return StreamProtocolError(
            f"invalid {kind}: {problem}",
            stream_name=seen_stream,
            group_id=seen_group,
            item_id=seen_item,
            subscription_id=seen_sub,
        )

    if not isinstance(raw_sub, str) or not raw_sub:
        raise invalid(f'"subscriptionId" must be a non-empty string, not {_show(raw_sub)}')
    if len(raw_sub) > MAX_SUBSCRIPTION_ID_LENGTH:
        raise invalid(f'"subscriptionId" is longer than {MAX_SUBSCRIPTION_ID_LENGTH} characters')

    if kind == "leave":
        # The server finds the subscription by its id; the rest is only echoed back, so be lenient.
        return ClientRequest("leave", seen_stream or "", seen_group or "", seen_item, raw_sub)

    try:
        stream_name = check_stream_name(raw_stream)
    except ConfigError as exc:
        raise invalid(f'"streamName": {exc}') from None
    try:
        group_id = _values.check_name('"groupId"', raw_group, _values.MAX_KEY_LENGTH)
        item_id = None if raw_item is None else _values.check_name('"id"', raw_item, _values.MAX_KEY_LENGTH)
    except StateValueError as exc:
        raise invalid(str(exc)) from None
    since = data.get("since")
    if since is not None and (not isinstance(since, int) or isinstance(since, bool) or since < 0):
        raise invalid(f'"since" must be a non-negative integer (a seq), not {_show(since)}')
    return ClientRequest("join", stream_name, group_id, item_id, raw_sub, since)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ServerMessage(NamedTuple):
    """A server message encoded but for its ``timestamp``: :meth:`stamp` makes the frame a socket sends.

    ``event`` (``"sync"``, ``"create"``...) and ``seq`` are kept beside the encoding for SSE, whose
    ``event:`` and ``id:`` lines carry them.
    """

    body: str  #: the JSON members after ``timestamp`` and the closing brace: ``"streamName":...}``
    event: str
    seq: int | None

    def stamp(self, timestamp: int) -> str:
        """The frame as sent: ``{"type":"stream","timestamp":<timestamp>,`` + the rest."""
        return f'{{"type":"stream","timestamp":{timestamp},{self.body}'


def _build(members: dict[str, Any], event: str, seq: int | None) -> ServerMessage:
    encoded = orjson.dumps(members).decode()
    return ServerMessage(encoded[1:], event, seq)  # drop "{": stamp() opens the object


def _address(stream: str, group: str, item: str | None, seq: int | None) -> dict[str, Any]:
    members: dict[str, Any] = {"streamName": stream, "groupId": group}
    if item is not None:
        members["id"] = item
    if seq is not None:
        members["seq"] = seq
    return members


def change_message(change: StreamChange) -> ServerMessage:
    """The message of one stored change: ``create``/``update`` carry the new item, ``delete`` the removed
    one, ``event`` (from ``send``) the event ``{"type", "data"}``; ``id`` is the changed item (or the
    item an event was sent to), absent for an event sent to the whole group."""
    members = _address(change.stream, change.group, change.item, change.seq)
    if change.kind == "event":
        members["event"] = {"type": "event", "event": _fragment(change.new_data)}
    elif change.kind == "delete":
        members["event"] = {"type": "delete", "data": _fragment(change.old_data)}
    elif change.kind in ("create", "update"):
        members["event"] = {"type": change.kind, "data": _fragment(change.new_data)}
    else:
        raise ValueError(f"unknown stream change kind {change.kind!r}")
    return _build(members, change.kind, change.seq)


def sync_message(
    stream: str,
    group: str,
    item: str | None,
    seq: int,
    data: Sequence[bytes] | bytes | None,
    *,
    reset: bool = False,
) -> ServerMessage:
    """The full state a join starts from, as of ``seq``: the group's encoded items (``item`` ``None``) or
    the one item (``None`` when absent). ``reset`` marks a sync sent instead of the replay a ``since``
    asked for (the history no longer reaches back): the client replaces what it holds."""
    payload: Any
    if item is None:
        if data is None or isinstance(data, bytes):
            raise ValueError("a group sync takes the list of the group's encoded items")
        payload = [orjson.Fragment(encoded) for encoded in data]
    else:
        if not (data is None or isinstance(data, bytes)):
            raise ValueError("an item sync takes the encoded item or None")
        payload = _fragment(data)
    event: dict[str, Any] = {"type": "sync", "data": payload}
    if reset:
        event["reset"] = True
    members = _address(stream, group, item, seq)
    members["event"] = event
    return _build(members, "sync", seq)


def error_message(
    code: str,
    message: str,
    *,
    stream_name: str | None = None,
    group_id: str | None = None,
    item_id: str | None = None,
    subscription_id: str | None = None,
) -> ServerMessage:
    """An error answering a client frame: ``{"type": "error", "data": {"code", "message",
    "subscriptionId"?}}`` addressed to the subscription it is about (empty names when unknown)."""
    data: dict[str, Any] = {"code": code, "message": message}
    if subscription_id is not None:
        data["subscriptionId"] = subscription_id
    members = _address(stream_name or "", group_id or "", item_id, None)
    members["event"] = {"type": "error", "data": data}
    return _build(members, "error", None)


def error_event_message(
    code: str,
    message: str,
    *,
    stream_name: str,
    group_id: str,
    item_id: str | None = None,
    subscription_id: str | None = None,
) -> ServerMessage:
    """The same refusal as Motia 0.17's server sent it: a custom event named ``"error"``
    (``{"type": "event", "event": {"type": "error", "data": {"code", "message"}}}``).

    Motia's npm clients have no branch for SPEC's ``{"type": "error"}`` and drop it; this form reaches a
    subscription's ``onEvent('error', ...)`` listener. A refused join gets both, the SPEC one first.
    """
    data: dict[str, Any] = {"code": code, "message": message}
    if subscription_id is not None:
        data["subscriptionId"] = subscription_id
    members = _address(stream_name, group_id, item_id, None)
    members["event"] = {"type": "event", "event": {"type": "error", "data": data}}
    return _build(members, "event", None)


def _fragment(data: bytes | None) -> orjson.Fragment | None:
    return None if data is None else orjson.Fragment(data)


def protocol_error_message(error: StreamProtocolError) -> ServerMessage:
    """The error message answering a frame :func:`parse_frame` refused."""
    return error_message(
        error.code,
        str(error),
        stream_name=error.stream_name,
        group_id=error.group_id,
        item_id=error.item_id,
        subscription_id=error.subscription_id,
    )
