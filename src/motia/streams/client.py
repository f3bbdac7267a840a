"""``StreamClient``: subscribe to a pymotia (or Motia) stream from Python, and never miss a change.

Each subscription has a WebSocket of its own: it resumes by its own ``seq`` after a dropped connection
(``since`` on the new join), and the server's messages on it need no routing between subscriptions (a
group subscription and an item subscription of the same group would otherwise both claim an item's
``sync``). Reading is pulled by the iterator: a caller that stops iterating stops reading, the server
sees a slow consumer, drops it, and the next iteration reconnects and resumes where it left off.

Reconnects wait with exponential backoff and full jitter (a random delay up to ``base * 2**attempt``,
capped), so a restarted server is not stampeded by its clients. Refusals that another attempt cannot
fix (credentials refused, access denied, an unknown stream) raise instead of reconnecting forever.

``websockets`` is imported when a subscription connects, never by ``import motia``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from motia.exceptions import (
    StreamAccessDeniedError,
    StreamAuthError,
    StreamConnectionError,
    StreamError,
    StreamNotFoundError,
)
from motia.streams.protocol import STREAM_ACCESS_DENIED, STREAM_NOT_FOUND, STREAM_UNAVAILABLE

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["StreamChangeMessage", "StreamClient", "StreamClientSubscription"]

log = logging.getLogger("motia.streams.client")

#: Close code of a connection whose credentials ``stream_authenticate`` refused (SPEC 10.4).
CLOSE_AUTH_REFUSED = 4401
#: Close code the client sends for a message over its size limit.
CLOSE_TOO_BIG = 1009


class _Retry(Exception):
    """An error frame after which the subscription reconnects and joins again."""


@dataclass(frozen=True, slots=True)
class StreamChangeMessage:
    """One message of a subscription: the initial ``sync`` (or a ``reset`` sync after a resume that the
    server's history no longer reached), an item's ``create``/``update``/``delete``, or an ``event``
    sent with ``send``.

    ``data`` is what the message carries: for ``sync`` the group's items (a list) or the item (or
    ``None``); for ``create``/``update`` the item; for ``delete`` the item as it was; for ``event`` the
    event's ``data`` (its type is ``event_type``). ``seq`` numbers the changes of the group; ``timestamp``
    is the server's, in milliseconds.
    """

    type: str
    data: Any
    seq: int | None
    stream_name: str
    group_id: str
    id: str | None = None
    timestamp: int | None = None
    reset: bool = False
    event_type: str | None = None

    @property
    def items(self) -> list[Any]:
        """A ``sync``'s items as a list (one item subscription's item, or none), else ``[]``."""
        if self.type != "sync":
            return []
        if isinstance(self.data, list):
            return list(self.data)
        return [] if self.data is None else [self.data]


class StreamClient:
    """Subscriptions to the streams of one server: ``url`` is its WebSocket address (``ws://host:port`` or
    ``.../__motia/streams``; ``http(s)://`` is taken as ``ws(s)://``), ``token`` is sent as the
    ``Authorization`` subprotocol (what browsers can send; the server's ``stream_authenticate`` reads it).

    ``reconnect_attempts`` bounds the attempts to reconnect after a connection drops (``None``: forever;
    they reset once a new connection delivers a message); ``backoff`` is the first delay's cap in
    seconds and ``max_backoff`` the cap of every delay.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        reconnect_attempts: int | None = None,
        backoff: float = 0.1,
        max_backoff: float = 10.0,
        open_timeout: float = 10.0,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self.url = _websocket_url(url)
        self.token = token
        if reconnect_attempts is not None and reconnect_attempts < 0:
            raise ValueError("reconnect_attempts must be >= 0 or None")
        if backoff <= 0 or max_backoff < backoff:
            raise ValueError("backoff must be > 0 and max_backoff >= backoff")
        self.reconnect_attempts = reconnect_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.max_message_bytes = max_message_bytes
        self._subscriptions: set[StreamClientSubscription] = set()
        self._closed = False

    def subscribe_group(self, stream: str, group_id: str, *, since: int | None = None) -> StreamClientSubscription:
        """A subscription to every item of a group (and the events sent to it), to use as
        ``async with client.subscribe_group("todo", "inbox") as sub: async for change in sub: ...``.

        ``since``: the last ``seq`` already seen; the server then replays only the changes after it (or
        sends a ``reset`` sync when its history no longer reaches back) instead of a full sync."""
        return StreamClientSubscription(self, stream, group_id, None, since=since)

    def subscribe_item(
        self, stream: str, group_id: str, item_id: str, *, since: int | None = None
    ) -> StreamClientSubscription:
        """A subscription to one item of a group (and the events sent to it); see :meth:`subscribe_group`."""
        return StreamClientSubscription(self, stream, group_id, item_id, since=since)

    async def aclose(self) -> None:
        """Close every open subscription (their iterators end) and refuse new ones."""
        self._closed = True
        subscriptions = list(self._subscriptions)
        await asyncio.gather(*(subscription.aclose() for subscription in subscriptions))

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"StreamClient({self.url!r}, token={'***' if self.token else None})"

    def _delay(self, attempt: int) -> float:
        """Full jitter: a random delay up to the exponential cap of ``attempt`` (0-based)."""
        cap = min(self.max_backoff, self.backoff * (2 ** min(attempt, 32)))
        return random.uniform(0, cap)


@dataclass(eq=False)
class StreamClientSubscription:
    """One subscription of a :class:`StreamClient`: an async context manager and an async iterator of
    :class:`StreamChangeMessage`. ``last_seq`` is the newest ``seq`` it delivered (where a reconnect resumes)."""

    client: StreamClient
    stream: str
    group_id: str
    item_id: str | None
    since: int | None = None
    subscription_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    reconnects: int = 0
    _socket: ClientConnection | None = field(default=None, repr=False)
    _closed: bool = field(default=False, repr=False)
    _entered: bool = field(default=False, repr=False)
    _sleeping: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def last_seq(self) -> int | None:
        return self.since

    async def __aenter__(self) -> StreamClientSubscription:
        if self.client.closed:
            raise StreamConnectionError("the StreamClient is closed")
        self.client._subscriptions.add(self)
        self._entered = True
        try:
            await self._connect()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (the server runs ``on_leave``); iteration ends."""
        self._closed = True
        self._sleeping.set()
        self.client._subscriptions.discard(self)
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close()

    def __aiter__(self) -> StreamClientSubscription:
        return self

    async def __anext__(self) -> StreamChangeMessage:
        if not self._entered:
            raise RuntimeError("use the subscription as `async with client.subscribe_group(...) as sub`")
        from websockets.exceptions import ConnectionClosed

        attempt = 0
        while True:
            if self._closed:
                raise StopAsyncIteration
            socket = self._socket
            if socket is None:
                try:
                    await self._reconnect(attempt)
                except StreamError:
                    await self.aclose()
                    raise
                attempt += 1
                continue
            try:
                frame = await socket.recv()
            except ConnectionClosed as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                try:
                    self._check_close(exc)
                except StreamError:
                    await self.aclose()
                    raise
                log.info("stream %s/%s: connection closed (%s); reconnecting", self.stream, self.group_id, exc)
                self._socket = None
                continue
            try:
                change = self._accept(frame)
            except _Retry as exc:
                log.warning("stream %s/%s: %s; joining again", self.stream, self.group_id, exc)
                self._socket = None
                await socket.close()
                continue
            except StreamError:
                await self.aclose()
                raise
            if change is not None:
                attempt = 0
                return change

    def _accept(self, frame: str | bytes) -> StreamChangeMessage | None:
        """The change a server frame carries for this subscription, or ``None`` for a frame to skip (a
        message of another subscription, one already delivered). Raises on a refused join."""
        try:
            message = orjson.loads(frame)
        except orjson.JSONDecodeError:
            log.warning("stream %s/%s: skipped a frame that is not JSON", self.stream, self.group_id)
            return None
        if not isinstance(message, dict) or message.get("type") != "stream":
            return None
        event = message.get("event")
        if not isinstance(event, dict):
            return None
        kind = event.get("type")
        if kind == "error":
            # An error names the subscription it answers (its stream/group may be unknown to the server).
            data = event.get("data")
            answered = data.get("subscriptionId") if isinstance(data, dict) else None
            if answered == self.subscription_id or (
                answered is None
                and message.get("streamName") == self.stream
                and message.get("groupId") == self.group_id
            ):
                self._refused(data)
            return None
        if message.get("streamName") != self.stream or message.get("groupId") != self.group_id:
            return None
        item_id = message.get("id")
        if self.item_id is not None and item_id != self.item_id:
            return None
        seq = message.get("seq")
        seq = seq if isinstance(seq, int) and not isinstance(seq, bool) else None
        if kind == "sync":
            self.since = seq  # a sync replaces everything before it
        elif seq is not None:
            if self.since is not None and seq <= self.since:
                return None  # delivered before a reconnect: never twice
            self.since = seq
        event_type: str | None = None
        data = event.get("data")
        if kind == "event":
            custom = event.get("event")
            if isinstance(custom, dict):
                event_type = custom.get("type")
                data = custom.get("data")
        timestamp = message.get("timestamp")
        return StreamChangeMessage(
            type=str(kind),
            data=data,
            seq=seq,
            stream_name=self.stream,
            group_id=self.group_id,
            id=item_id if isinstance(item_id, str) else None,
            timestamp=timestamp if isinstance(timestamp, int) else None,
            reset=bool(event.get("reset", message.get("reset", False))),
            event_type=event_type,
        )

    def _refused(self, data: object) -> None:
        """Raise for an error answering the join: :class:`_Retry` for one another join may not meet."""
        code = data.get("code") if isinstance(data, dict) else None
        detail = data.get("message") if isinstance(data, dict) else None
        what = f"{self.stream}/{self.group_id}" + (f"/{self.item_id}" if self.item_id is not None else "")
        if code == STREAM_ACCESS_DENIED:
            raise StreamAccessDeniedError(f"the server denied access to {what} ({STREAM_ACCESS_DENIED})")
        if code == STREAM_UNAVAILABLE:
            raise _Retry(f"the server could not serve {what} now: {detail or code}")
        if code == STREAM_NOT_FOUND:
            raise StreamNotFoundError(f"the server has no stream {self.stream!r} ({detail or code})")
        raise StreamError(
            f"the server refused the subscription to {what}: {code or 'error'}" + (f": {detail}" if detail else "")
        )

    def _check_close(self, exc: Any) -> None:
        """Raise for a close another attempt cannot fix: credentials refused, or a message over
        ``max_message_bytes`` (the same sync would be too big again on every reconnect)."""
        sent = getattr(exc, "sent", None)
        if sent is not None and sent.code == CLOSE_TOO_BIG:
            raise StreamError(
                f"a message from {self.client.url} for {self.stream}/{self.group_id} is larger than "
                f"max_message_bytes={self.client.max_message_bytes}: raise it to subscribe there"
            ) from None
        received = getattr(exc, "rcvd", None)
        if received is not None and received.code == CLOSE_AUTH_REFUSED:
            raise StreamAuthError(
                f"the server at {self.client.url} refused the credentials (close {CLOSE_AUTH_REFUSED}: "
                f"{received.reason or 'unauthorized'})"
            ) from None

    async def _reconnect(self, attempt: int) -> None:
        limit = self.client.reconnect_attempts
        if limit is not None and attempt >= limit:
            raise StreamConnectionError(
                f"could not reconnect to {self.client.url} for {self.stream}/{self.group_id} after {attempt} attempt(s)"
            )
        delay = self.client._delay(attempt)
        self._sleeping.clear()
        try:
            await asyncio.wait_for(self._sleeping.wait(), delay)
        except TimeoutError:
            pass
        if self._closed:
            return
        self.reconnects += 1
        try:
            await self._connect()
        except StreamConnectionError as exc:
            log.info("stream %s/%s: reconnect attempt %d failed: %s", self.stream, self.group_id, attempt + 1, exc)

    async def _connect(self) -> None:
        """Open a connection and join (resuming after ``since`` when set). Raises
        :class:`StreamAuthError` for refused credentials, :class:`StreamConnectionError` otherwise."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI
        from websockets.typing import Subprotocol

        client = self.client
        subprotocols = [Subprotocol("Authorization"), Subprotocol(client.token)] if client.token else None
        try:
            socket = await connect(
                client.url,
                subprotocols=subprotocols,
                open_timeout=client.open_timeout,
                max_size=client.max_message_bytes,
                proxy=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403):
                raise StreamAuthError(f"the server at {client.url} refused the connection (HTTP {status})") from None
            raise StreamConnectionError(f"the server at {client.url} refused the connection (HTTP {status})") from exc
        except InvalidURI as exc:
            raise StreamConnectionError(f"not a WebSocket URL: {client.url!r} ({exc})") from None
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            raise StreamConnectionError(f"cannot connect to {client.url}: {exc}") from exc
        if self._closed:
            await socket.close()
            return
        data: dict[str, Any] = {
            "streamName": self.stream,
            "groupId": self.group_id,
            "subscriptionId": self.subscription_id,
        }
        if self.item_id is not None:
            data["id"] = self.item_id
        if self.since is not None:
            data["since"] = self.since
        from websockets.exceptions import ConnectionClosed

        try:
            await socket.send(orjson.dumps({"type": "join", "data": data}).decode())
        except ConnectionClosed as exc:
            self._check_close(exc)
            raise StreamConnectionError(f"the connection to {client.url} closed before the join: {exc}") from exc
        self._socket = socket


def _websocket_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(
            f"a stream server URL must be ws://, wss://, http:// or https://host[:port][/path], not {url!r}"
        )
    return urlunsplit((scheme, parts.netloc, parts.path or "/", parts.query, ""))
