"""The stream SSE endpoints (SPEC 10.4): ``GET /__motia/streams/{stream}/{group}[/{id}]`` as ``text/event-stream``.

For clients and proxies without WebSocket: one subscription per response, the same messages as the
WebSocket (``event:`` the event type, ``id:`` the ``seq``, ``data:`` the JSON message), from the same hub.
A browser's ``EventSource`` reconnects by itself and sends the last ``id:`` it saw as ``Last-Event-ID``;
the join then resumes after that ``seq`` (``?since=`` does the same for clients that cannot set headers),
or sends a ``reset`` sync when the history no longer reaches back.

Refusals are HTTP answers before the stream starts, with a JSON body saying why: 401 when
``stream_authenticate`` raises, 403 when ``can_access`` says no (or raises), 404 for an unknown stream,
400 for a bad id or ``Last-Event-ID``, 503 when the store fails (or the app is shutting down).

Once streaming, a comment line goes out every ``keepalive`` seconds of silence, so that proxies do not
time the response out and a dead client is noticed. The subscriber's queue is bounded as for a socket: a
reader that does not keep up is ended (a final comment says why) and resumes by ``Last-Event-ID``.
``on_join`` runs when the stream starts and ``on_leave`` when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from motia.exceptions import StateValueError
from motia.runtime.streams.auth import Authenticate, StreamAuthRefused, authenticate
from motia.runtime.streams.subscriber import Frame, Subscriber
from motia.state import values as _values
from motia.streams.protocol import (
    STREAM_ACCESS_DENIED,
    STREAM_NOT_FOUND,
    STREAM_UNAVAILABLE,
    ClientRequest,
)

if TYPE_CHECKING:
    from motia.runtime.streams.hub import StreamHub

__all__ = ["KEEPALIVE", "SSE_PATHS", "EventStreamEndpoint", "encode_frame", "sse_routes"]

log = logging.getLogger("motia.streams")

SSE_PATHS = ("/__motia/streams/{stream}/{group}", "/__motia/streams/{stream}/{group}/{id}")
#: Seconds of silence after which a keep-alive comment is sent.
KEEPALIVE = 15.0
#: Frames written per chunk of the response.
BATCH = 256

_STATUS = {STREAM_ACCESS_DENIED: 403, STREAM_NOT_FOUND: 404, STREAM_UNAVAILABLE: 503}
_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}  # no buffering by nginx-like proxies


def encode_frame(frame: Frame) -> str:
    """One SSE event: ``event:`` the event type, ``id:`` the seq (when the message has one), ``data:`` the
    JSON message (one line: JSON never holds a raw newline)."""
    if frame.seq is None:
        return f"event: {frame.event}\ndata: {frame.text}\n\n"
    return f"event: {frame.event}\nid: {frame.seq}\ndata: {frame.text}\n\n"


def _refusal(status: int, code: str, message: str) -> Response:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=_HEADERS)


def _since(request: Request) -> int | None:
    """Where to resume: ``Last-Event-ID`` (what ``EventSource`` sends) or else ``?since=``; ``None`` for a
    fresh sync. Raises ``ValueError`` naming the bad value."""
    for name, raw in (
        ("Last-Event-ID", request.headers.get("last-event-id")),
        ("since", request.query_params.get("since")),
    ):
        if raw is None or raw.strip() == "":
            continue
        text = raw.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 20:
            raise ValueError(f"{name} must be a non-negative integer (a seq), not {raw[:40]!r}")
        return int(text)
    return None


class EventStreamEndpoint:
    """The ASGI HTTP application of the SSE paths; ``hub_of()`` gives the app's started hub."""

    def __init__(
        self,
        hub_of: Callable[[], Awaitable[StreamHub]],
        authenticate_hook: Callable[[], Authenticate | None],
        *,
        auth_context: Callable[[], Any] | None = None,
        keepalive: float | None = None,
    ) -> None:
        keepalive = KEEPALIVE if keepalive is None else keepalive
        if keepalive <= 0:
            raise ValueError("keepalive must be > 0 seconds")
        self._hub_of = hub_of
        self._authenticate_hook = authenticate_hook
        self._auth_context = auth_context
        self.keepalive = keepalive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self._open(request)
        await response(scope, receive, send)

    async def _open(self, request: Request) -> Response:
        """The refusal, or the event stream of a joined subscriber."""
        if request.method != "GET":
            return _refusal(405, "METHOD_NOT_ALLOWED", "stream events are read with GET")
        try:
            client = request.client
            auth_context = await authenticate(
                self._authenticate_hook(),
                request.headers,
                request.query_params,
                str(request.url),
                path=request.url.path,
                addr=f"{client.host}:{client.port}" if client else "",
                context=self._auth_context,
            )
        except StreamAuthRefused:
            return _refusal(401, "UNAUTHORIZED", "the credentials were refused")
        params = request.path_params
        stream, group, item = params["stream"], params["group"], params.get("id")
        try:
            since = _since(request)
            _values.check_name("group id", group, _values.MAX_KEY_LENGTH)
            if item is not None:
                _values.check_name("item id", item, _values.MAX_KEY_LENGTH)
        except (ValueError, StateValueError) as exc:
            return _refusal(400, "INVALID_MESSAGE", str(exc))
        try:
            hub = await self._hub_of()
        except Exception as exc:
            log.error("the stream hub cannot start (%s): refusing the event stream", exc)
            return _refusal(503, STREAM_UNAVAILABLE, "the stream store is unavailable")
        subscriber = hub.open_subscriber(auth_context)
        joined = False
        try:
            refusal = await subscriber.join(ClientRequest("join", stream, group, item, str(uuid.uuid4()), since))
            joined = refusal is None
        finally:
            if not joined:
                await subscriber.aclose()
        if refusal is not None:
            return _refusal(_STATUS.get(refusal.code, 400), refusal.code, refusal.message)
        return _EventStream(subscriber, self.keepalive)


class _EventStream(StreamingResponse):
    """The response of one joined subscriber; ``on_leave`` runs when it ends, however it ends."""

    def __init__(self, subscriber: Subscriber, keepalive: float) -> None:
        self.subscriber = subscriber
        self.keepalive = keepalive
        super().__init__(self._events(), media_type="text/event-stream", headers=_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled request still runs on_leave
                await self.subscriber.aclose()

    async def _events(self) -> AsyncIterator[str]:
        subscriber = self.subscriber
        while True:
            try:
                batch = await asyncio.wait_for(subscriber.next_batch(BATCH), self.keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if not batch:
                if subscriber.close_code not in (None, 1000, 1001):
                    log.info("stream SSE response ended: %s", subscriber.close_reason)
                yield f": closed: {_one_line(subscriber.close_reason or 'the server closed the stream')}\n\n"
                return
            yield "".join(encode_frame(frame) for frame in batch)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def sse_routes(endpoint: EventStreamEndpoint) -> list[BaseRoute]:
    """The SSE routes; serve them before the steps' routes."""
    return [Route(path, endpoint, methods=["GET"]) for path in SSE_PATHS]
