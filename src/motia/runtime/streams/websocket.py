"""The stream WebSocket endpoint (SPEC 10.3), at ``/`` (where Motia's clients connect) and ``/__motia/streams``.

One connection, three tasks:

- the **reader** parses each frame (:func:`~motia.streams.protocol.parse_frame`) and joins or leaves, one
  frame at a time (a leave never overtakes its join); a malformed frame, an unknown stream, a refused join
  get an error message and the socket stays open; a frame over the size limit, or a run of bad frames,
  closes it (1009 / 1008) with the reason;
- the **writer** drains the subscriber's bounded queue to the socket; when the client does not read, the
  socket's buffer fills, the writer waits, the queue passes its limit and the subscriber closes itself
  (1013, "resume by seq"): the server's memory per client stays bounded;
- the endpoint waits for the first of: the client gone, the reader done, the subscriber closed; then it
  stops the others, closes the socket with the reason, and runs ``on_leave`` for what was joined.

Keep-alive is uvicorn's: a ping every 20 s, and a socket that does not answer within 20 s is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import URL, Headers, QueryParams
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Receive, Scope, Send

from motia.exceptions import StreamProtocolError
from motia.runtime.streams.auth import (
    CLOSE_UNAUTHORIZED,
    Authenticate,
    StreamAuthRefused,
    authenticate,
    select_subprotocol,
)
from motia.runtime.streams.subscriber import Subscriber
from motia.streams.protocol import (
    MAX_FRAME_BYTES,
    MESSAGE_TOO_LARGE,
    error_event_message,
    error_message,
    parse_frame,
    protocol_error_message,
)

if TYPE_CHECKING:
    from motia.runtime.streams.hub import StreamHub

__all__ = ["STREAM_PATHS", "StreamEndpoint", "stream_routes"]

log = logging.getLogger("motia.streams")

STREAM_PATHS = ("/", "/__motia/streams")
#: Consecutive refused frames (malformed, denied...) after which the socket is closed as abusive.
MAX_BAD_FRAMES = 100
#: How long the close frame may wait for a client that does not read.
CLOSE_WAIT = 5.0
CLOSE_TOO_BIG = 1009
CLOSE_POLICY = 1008
CLOSE_UNAVAILABLE = 1011


class StreamEndpoint:
    """The ASGI WebSocket application serving streams; ``hub_of()`` gives the app's started hub."""

    def __init__(
        self,
        hub_of: Callable[[], Awaitable[StreamHub]],
        authenticate_hook: Callable[[], Authenticate | None],
        *,
        auth_context: Callable[[], Any] | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_bad_frames: int = MAX_BAD_FRAMES,
    ) -> None:
        self._hub_of = hub_of
        self._authenticate_hook = authenticate_hook
        self._auth_context = auth_context
        self.max_frame_bytes = max_frame_bytes
        self.max_bad_frames = max_bad_frames

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":  # pragma: no cover - routed as a WebSocketRoute
            raise RuntimeError("the stream endpoint serves WebSocket connections only")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        subprotocol = select_subprotocol(scope.get("subprotocols") or ())
        headers = Headers(scope=scope)
        try:
            client = scope.get("client")
            auth_context = await authenticate(
                self._authenticate_hook(),
                headers,
                QueryParams(scope.get("query_string", b"")),
                str(URL(scope=scope)),
                path=scope.get("path", "/"),
                addr=f"{client[0]}:{client[1]}" if client else "",
                context=self._auth_context,
            )
        except StreamAuthRefused:
            # Accepted then closed, so that the client sees the 4401 (a refused handshake is only a 403).
            await send({"type": "websocket.accept", "subprotocol": subprotocol})
            await send({"type": "websocket.close", "code": CLOSE_UNAUTHORIZED, "reason": "unauthorized"})
            return
        try:
            hub = await self._hub_of()
        except Exception as exc:
            log.error("the stream hub cannot start (%s): refusing the connection", exc)
            await send({"type": "websocket.accept", "subprotocol": subprotocol})
            await send(
                {"type": "websocket.close", "code": CLOSE_UNAVAILABLE, "reason": "the stream store is unavailable"}
            )
            return
        await send({"type": "websocket.accept", "subprotocol": subprotocol})
        subscriber = hub.open_subscriber(auth_context)
        try:
            await self._serve(subscriber, receive, send)
        finally:
            await subscriber.aclose()

    async def _serve(self, subscriber: Subscriber, receive: Receive, send: Send) -> None:
        state = _Connection()
        reader = asyncio.create_task(self._read(subscriber, receive, state), name="motia stream reader")
        writer = asyncio.create_task(_write(subscriber, send), name="motia stream writer")
        closed = asyncio.create_task(subscriber.wait_closed(), name="motia stream closed")
        tasks = {reader, writer, closed}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.error("a stream connection task failed", exc_info=result)
                state.close(CLOSE_UNAVAILABLE, "internal error")
        if state.disconnected:
            return
        code = state.close_code or subscriber.close_code or 1000
        reason = state.close_reason or subscriber.close_reason or ""
        subscriber.close(code, reason)
        with contextlib.suppress(Exception):  # the client may be gone already: nothing left to tell it
            await asyncio.wait_for(send({"type": "websocket.close", "code": code, "reason": reason[:120]}), CLOSE_WAIT)

    async def _read(self, subscriber: Subscriber, receive: Receive, state: _Connection) -> None:
        bad = 0
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                state.disconnected = True
                return
            if message["type"] != "websocket.receive":
                continue
            frame = message.get("text")
            if frame is None:
                frame = message.get("bytes") or b""
            try:
                request = parse_frame(frame, max_bytes=self.max_frame_bytes)
            except StreamProtocolError as exc:
                if exc.code == MESSAGE_TOO_LARGE:
                    state.close(CLOSE_TOO_BIG, str(exc))
                    return
                subscriber.send(protocol_error_message(exc))
                bad += 1
            else:
                if request.type == "leave":
                    await subscriber.leave(request.subscription_id)
                    bad = 0
                    continue
                refusal = await subscriber.join(request)
                if refusal is None:
                    bad = 0
                    continue
                for build in (error_message, error_event_message):  # Motia's clients hand the 2nd to onEvent('error')
                    subscriber.send(
                        build(
                            refusal.code,
                            refusal.message,
                            stream_name=request.stream_name,
                            group_id=request.group_id,
                            item_id=request.item_id,
                            subscription_id=request.subscription_id,
                        )
                    )
                bad += 1
            if bad >= self.max_bad_frames:
                state.close(CLOSE_POLICY, f"{bad} refused frames in a row")
                return


class _Connection:
    """What the reader learnt: the client left, or the socket must close with this code and reason."""

    __slots__ = ("close_code", "close_reason", "disconnected")

    def __init__(self) -> None:
        self.disconnected = False
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def close(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason


async def _write(subscriber: Subscriber, send: Send) -> None:
    try:
        while True:
            batch = await subscriber.next_batch()
            if not batch:
                return
            for frame in batch:
                await send({"type": "websocket.send", "text": frame.text})
    except OSError:  # the client is gone (uvicorn's ClientDisconnected): the reader sees the disconnect
        return


def stream_routes(endpoint: StreamEndpoint) -> list[BaseRoute]:
    """The WebSocket routes of ``endpoint``: ``/`` and ``/__motia/streams`` (HTTP requests to them are
    untouched: these routes match WebSocket connections only)."""
    return [WebSocketRoute(path, endpoint) for path in STREAM_PATHS]
