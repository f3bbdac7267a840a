"""Streaming HTTP responses: ``input.response`` of an HTTP handler (motia-py 1.0's ``MotiaHttpResponse``).

A handler that calls ``await input.response.status(...)``, ``headers(...)``, writes to
``input.response.writer.stream`` or calls ``close()`` answers the request itself, chunk by chunk
(server-sent events, chunked bodies); one that does none of it returns its response as always.

How a chunk travels: ``write`` is synchronous (upstream's signature) and may be called from the event
loop (``async def`` handlers) or from a pool thread (``def`` handlers). It never blocks the loop: the
chunk is appended to a queue (from a thread, through ``loop.call_soon_threadsafe``, which keeps the
order of one thread's writes) and a sender task pushes each chunk to the ASGI server as its own
``http.response.body`` message, the first one preceded by ``http.response.start`` (the status and
headers set so far, ``x-trace-id``, no content length: the server sends it chunked). So a chunk is on
the wire as soon as the loop runs the sender: a handler that blocks the loop (``time.sleep`` in an
``async def``) delays its chunks until it yields, but never loses them.

A slow client cannot make a ``def`` handler's chunks pile up: past :data:`HIGH_WATER` queued bytes its
``write`` waits until the sender caught up; an ``async def`` handler can ``await response.drain()``.
A watcher task waits for the client's ``http.disconnect``: from then on writes raise
:class:`~motia.exceptions.ClientDisconnected`, ``response.disconnected`` is true and queued chunks are
dropped, so nothing piles up for a client that is gone. Kept free of starlette so ``import motia`` stays
lean: the ASGI ``send`` and ``receive`` are plain callables.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from typing import Any

from motia.exceptions import ClientDisconnected, HttpResponseError

__all__ = ["HIGH_WATER", "MotiaHttpResponse", "RequestBody", "ResponseWriter", "WritableStream"]

logger = logging.getLogger("motia.http")

#: Queued bytes past which a ``def`` handler's ``write`` waits for the client to take some (its thread
#: can block; an ``async def`` handler's cannot, so it may ``await response.drain()`` itself).
HIGH_WATER = 1024 * 1024

#: A header name (RFC 9110 token); values must be ASCII without CR, LF or NUL.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


class _Done:
    """An awaitable that is already complete: ``status()``/``headers()`` act when called, so awaiting them
    (upstream's ``async`` signature) and not awaiting them (in a ``def`` handler) both work."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # pragma: no cover - makes this a generator


_DONE = _Done()


class BodyStream:
    """The raw request body as chunks, iterable with ``for`` and ``async for`` (the whole body is read
    before the handler runs, so it is one chunk; none for an empty body)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[bytes]:
        if self._raw:
            yield self._raw

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._raw:
            yield self._raw


class RequestBody:
    """``input.request_body`` (motia-py 1.0's reader of the raw body): ``.stream`` yields its chunks."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    @property
    def stream(self) -> BodyStream:
        return BodyStream(self._raw)

    async def read(self) -> bytes:
        """The whole raw body."""
        return self._raw


class WritableStream:
    """``response.writer.stream``: ``write(chunk)`` sends a chunk, ``end(chunk=None)`` sends it and closes."""

    __slots__ = ("_response",)

    def __init__(self, response: MotiaHttpResponse) -> None:
        self._response = response

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue ``data`` (bytes; text is sent as UTF-8) as the response's next chunk.

        Raises :class:`ClientDisconnected` when the client has gone away and
        :class:`HttpResponseError` after ``close()``: nothing is queued then.
        """
        self._response.write(data)

    def end(self, data: bytes | bytearray | memoryview | str | None = None) -> None:
        """Write ``data`` (when given) and close the response."""
        if data is not None:
            self._response.write(data)
        self._response.close()


class ResponseWriter:
    """``response.writer`` (upstream's channel writer): its ``stream`` is what handlers write to."""

    __slots__ = ("stream",)

    def __init__(self, response: MotiaHttpResponse) -> None:
        self.stream = WritableStream(response)


class MotiaHttpResponse:
    """The response of one HTTP request, written by its handler (``input.response``).

    ``await status(code)`` and ``await headers({...})`` set what ``http.response.start`` will carry (the
    status defaults to 200); ``writer.stream.write(chunk)`` (also ``stream.write`` and ``write``) sends a
    chunk; ``close()`` ends the body (the runtime ends it when the handler returns, too). After the first
    write, ``status``/``headers`` can no longer change what was sent: such a call is logged as an error and
    ignored, and the stream goes on. ``disconnected`` is true once the client has gone away (``await
    wait_disconnected()`` waits for it); writes then raise :class:`ClientDisconnected`.

    Built by the runtime for each request whose handler touches ``input.response``. One built without a
    transport (``MotiaHttpResponse()``, as ``motia.testing.api_request`` gives) records instead of
    sending: ``status_code``, ``headers_sent``... and ``chunks``, for unit tests of streaming handlers.
    """

    def __init__(
        self,
        send: Send | None = None,
        receive: Receive | None = None,
        *,
        trace_id: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._send = send
        self._receive = receive
        self.trace_id = trace_id
        self._loop = loop
        self.status_code = 200
        self._headers: dict[str, str] = {}
        #: ``True`` once the handler used this response (status, headers, a write, close).
        self.touched = False
        #: ``True`` once a chunk was written (status and headers are then fixed).
        self.writing = False
        #: ``True`` once ``close()`` was called (by the handler, or the runtime after it returned).
        self.closed = False
        #: The chunks written, in order, when there is no transport (tests); empty otherwise.
        self.chunks: list[bytes] = []
        self._disconnected = asyncio.Event()
        self._gone = False  # _disconnected.is_set(), readable from any thread
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0  # written, not yet handed to the server; counted by write() (any thread)
        self._count_lock = threading.Lock()
        self._drained = asyncio.Event()
        self._drained.set()
        self._wakeup = asyncio.Event()
        self._ending = False
        self._started = False
        self._sender: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.stream = WritableStream(self)
        self.writer = ResponseWriter(self)

    # -- what handlers call -------------------------------------------------------------------------

    def status(self, status_code: int) -> Awaitable[None]:
        """Set the status (100..599) sent with the first chunk; awaitable, and effective at once."""
        if isinstance(status_code, bool) or not isinstance(status_code, int) or not 100 <= status_code <= 599:
            raise HttpResponseError(f"response status must be an int between 100 and 599, got {status_code!r}")
        self.touched = True
        if self.writing or self.closed:
            self._too_late(f"status({status_code})")
        else:
            self.status_code = status_code
        return _DONE

    def headers(self, headers: Mapping[str, Any]) -> Awaitable[None]:
        """Add headers (a later value of the same name, in any case, replaces an earlier one) sent with
        the first chunk; awaitable, and effective at once."""
        if not isinstance(headers, Mapping):
            raise HttpResponseError(f"response headers must be a dict of names to values, got {headers!r:.100}")
        checked = {}
        for name, value in headers.items():
            key, text = str(name).lower(), str(value)
            if not _TOKEN.fullmatch(key) or any(c in text for c in "\r\n\0") or not text.isascii():
                raise HttpResponseError(f"invalid response header {name!r}: {value!r:.100}")
            checked[key] = text
        self.touched = True
        if self.writing or self.closed:
            self._too_late(f"headers({dict(headers)!r:.100})")
            return _DONE
        self._headers.update(checked)
        return _DONE

    @property
    def headers_sent(self) -> dict[str, str]:
        """The headers set so far (lower-case names), as the first chunk carries them."""
        return dict(self._headers)

    @property
    def disconnected(self) -> bool:
        """Whether the client has gone away (writes raise :class:`ClientDisconnected`)."""
        return self._gone

    async def wait_disconnected(self) -> None:
        """Wait until the client goes away (or the response has ended)."""
        self._watch_client()
        await self._disconnected.wait()

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send ``data`` as the next chunk (see :meth:`WritableStream.write`)."""
        if isinstance(data, str):
            chunk = data.encode()
        elif isinstance(data, bytes | bytearray | memoryview):
            chunk = bytes(data)
        else:
            raise HttpResponseError(f"a response chunk must be bytes or str, got {type(data).__name__}")
        if self._gone:
            raise ClientDisconnected("the client closed the connection: the chunk was not sent")
        if self.closed:
            raise HttpResponseError("the response was written after close(): the chunk was not sent")
        self.touched = self.writing = True
        if self._send is not None:
            self._count(len(chunk))
        self._post(self._push, chunk)
        if self._queued_bytes > HIGH_WATER and self._loop is not None and not self._on_loop():
            # A `def` handler's thread: wait for the client rather than queue without bound.
            asyncio.run_coroutine_threadsafe(self.drain(), self._loop).result()

    async def drain(self) -> None:
        """Wait until every chunk written so far was handed to the server (or dropped: client gone)."""
        await self._drained.wait()

    def close(self) -> None:
        """End the response body (further writes raise); closing twice does nothing."""
        if self.closed:
            return
        self.touched = self.closed = True
        self._post(self._end)

    # -- the runtime's side -------------------------------------------------------------------------

    def _too_late(self, call: str) -> None:
        logger.error(
            "%s after the first chunk of the response was written: ignored (trace %s)",
            call,
            self.trace_id,
            extra={"motia_trace_id": self.trace_id},
        )

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop: now when called from it, else soon (thread-safe, in order)."""
        if self._send is None or self._on_loop():
            fn(*args)
        elif self._loop is not None:
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _count(self, size: int) -> None:
        with self._count_lock:
            self._queued_bytes += size

    def _push(self, chunk: bytes) -> None:
        if self._send is None:
            self.chunks.append(chunk)
            return
        if self._gone:
            self._count(-len(chunk))
            return
        self._queue.append(chunk)
        self._drained.clear()
        self._kick()

    def _end(self) -> None:
        if self._send is None:
            return
        self._ending = True
        self._kick()

    def _kick(self) -> None:
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._pump())
            self._watch_client()
        self._wakeup.set()

    def _watch_client(self) -> None:
        if self._watcher is None and self._receive is not None:
            self._watcher = asyncio.ensure_future(self._watch())

    async def _pump(self) -> None:
        """Send the queued chunks in order, then the end of the body once ``close()`` was called."""
        assert self._send is not None
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue and not self._gone:
                    chunk = self._queue.popleft()
                    await self._start()
                    await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
                    self._count(-len(chunk))
                if not self._queue:
                    self._drained.set()
                if self._gone:
                    return
                if self._ending:
                    await self._start()
                    await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
        except OSError as exc:  # the connection broke under the server: the client is gone
            logger.info("streaming response (trace %s) stopped: %s", self.trace_id, exc)
            self._mark_gone()
        except Exception:
            logger.exception("streaming response (trace %s) failed: the rest is dropped", self.trace_id)
            self._mark_gone()

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._headers.items()]
        if self.trace_id is not None and "x-trace-id" not in self._headers:
            headers.append((b"x-trace-id", self.trace_id.encode()))
        assert self._send is not None
        await self._send({"type": "http.response.start", "status": self.status_code, "headers": headers})

    async def _watch(self) -> None:
        """Wait for the client's ``http.disconnect`` (the request body was read before the handler ran)."""
        assert self._receive is not None
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._mark_gone()

    def _mark_gone(self) -> None:  # also when the response is complete: the server then says "disconnect"
        if not self._gone:
            self._gone = True
            for chunk in self._queue:
                self._count(-len(chunk))
            self._queue.clear()
            self._drained.set()
            self._disconnected.set()
            self._wakeup.set()

    async def finish(self) -> None:
        """End the body (if the handler did not) and wait until everything queued was sent or dropped;
        called by the runtime once the handler returned or raised."""
        self.close()
        if self._send is None:
            return
        self._kick()
        assert self._sender is not None
        try:
            await self._sender
        finally:
            if self._watcher is not None and not self._watcher.done():
                self._watcher.cancel()
                await asyncio.gather(self._watcher, return_exceptions=True)

    def abort(self) -> None:
        """Stop sending (the request was cancelled: the server is shutting down); nothing more goes out."""
        self._mark_gone()
        for task in (self._sender, self._watcher):
            if task is not None and not task.done():
                task.cancel()

    def __repr__(self) -> str:
        return f"MotiaHttpResponse(status={self.status_code}, writing={self.writing}, closed={self.closed})"
