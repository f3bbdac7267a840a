"""Wake-ups across processes: ``LISTEN``/``NOTIFY`` on one channel per store.

A transaction that makes deliveries claimable, or records a stream change, sends ``NOTIFY`` on the store's
channel (:attr:`Notifier.channel`, one per schema, so apps sharing a database do not wake each other).
PostgreSQL delivers it when, and only if, the transaction commits. The payload says what changed (``d``:
deliveries or change events, ``s``: a stream change) and which backend instance sent it, so an instance
skips its own: its local listeners were already called at its commit.

Each backend instance that needs wake-ups (it has listeners, or a stream tail waits) keeps one dedicated
connection listening, in a thread of its own with its own event loop: a backend is used from several loops
(the sync twin's private one, a script's ``asyncio.run``), and a connection belongs to one loop. A
notification calls the backend's callbacks from that thread (the contract allows any thread).

A lost listening connection (server restart, network) is re-established with backoff (up to
:data:`MAX_BACKOFF` seconds) and logged; after reconnecting the callbacks run once, since notifications
sent meanwhile are lost. While not listening, :attr:`Notifier.listening` is false and waiters poll (the
callbacks also run when the connection is lost, so idle workers and tails notice and start polling). The
connection is also checked every :data:`HEALTH_INTERVAL` seconds, so a silently dead one is noticed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger("motia.state")

#: Seconds between two attempts to re-establish a lost listening connection, at most.
MAX_BACKOFF = 5.0
#: The first pause before reconnecting (doubled after each failure up to MAX_BACKOFF).
FIRST_BACKOFF = 0.1
#: How often (seconds) the listening connection is checked with a round trip.
HEALTH_INTERVAL = 10.0
#: How long a health check may take before the connection is deemed lost (seconds).
HEALTH_TIMEOUT = 5.0

#: A channel name is an identifier: at most 63 bytes.
_MAX_CHANNEL = 63


def channel_for(schema: str) -> str:
    """The store's channel: ``motia.<schema>``, or a digest of it when that is too long for an identifier."""
    channel = f"motia.{schema}"
    if len(channel.encode()) <= _MAX_CHANNEL:
        return channel
    return "motia." + hashlib.sha256(schema.encode()).hexdigest()[:32]


class Notifier:
    """Listens on ``channel`` in a thread of its own once :meth:`start` is called, until :meth:`close`.

    ``connect`` opens a new connection on the running loop (the listener's); ``on_deliveries`` and
    ``on_stream`` are called (in the listener's thread) for every notification of another instance, and
    both after a reconnection. ``name`` names the store in log messages (its masked URL).
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[Any]],
        channel: str,
        *,
        on_deliveries: Callable[[], None],
        on_stream: Callable[[], None],
        name: str,
    ) -> None:
        self.channel = channel
        self.token = uuid.uuid4().hex[:16]
        self._connect = connect
        self._on_deliveries = on_deliveries
        self._on_stream = on_stream
        self._name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._closed = False
        self._pid = os.getpid()
        self._listening = threading.Event()
        #: How many times a listening connection was established (1 after the first, +1 per reconnection).
        self.connections = 0
        #: The server process id of the listening connection (``None`` before the first): what an operator
        #: finds in ``pg_stat_activity``.
        self.pid: int | None = None

    @property
    def listening(self) -> bool:
        """Whether notifications are being received now (else waiters should poll)."""
        return self._listening.is_set()

    def payload(self, what: str) -> str:
        """The payload of a notification of ``what`` (``"d"`` or ``"s"``) sent by this instance."""
        return f"{what}{self.token}"

    def start(self) -> None:
        """Start listening (idempotent; a no-op once closed). In a forked child, whose copy of the listener's
        thread does not run, a new one is started."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread and loop are not this process's
                self._pid, self._thread, self._loop, self._stop = os.getpid(), None, None, None
                self._listening.clear()
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._run_thread, name="motia-pg-listen", daemon=True)
            self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Block until listening (``True``) or ``timeout`` seconds (``False``)."""
        return self._listening.wait(timeout)

    def close(self) -> None:
        """Stop listening and close the connection; wait for the thread (briefly). Idempotent."""
        with self._lock:
            self._closed = True
            thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # its loop already ended
                pass
        if thread is not threading.current_thread():
            thread.join(timeout=5.0)

    # -- the listener's thread -----------------------------------------------------------------------

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:  # never silently: the store would fall back to polling without anyone knowing
            logger.exception("the listener of the state store %s stopped", self._name)
        finally:
            self._listening.clear()

    async def _run(self) -> None:
        stop = asyncio.Event()
        with self._lock:
            if self._closed:
                return
            self._loop, self._stop = asyncio.get_running_loop(), stop
        backoff = FIRST_BACKOFF
        failures = 0
        while not stop.is_set():
            try:
                connection = await self._connect()
            except Exception as exc:  # unreachable, restarting: try again, and say so (once per outage)
                failures += 1
                if failures == 1:
                    logger.warning(
                        "cannot listen for wake-ups on the state store %s (%s); retrying with backoff", self._name, exc
                    )
                await _wait(stop, backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            try:
                await self._listen(connection, stop, reconnected=failures > 0 or self.connections > 0)
            finally:
                self._listening.clear()
                await _close(connection)
            if stop.is_set():
                return
            logger.warning("lost the wake-up connection of the state store %s; reconnecting", self._name)
            self._call(self._on_deliveries)  # idle workers and tails waiting for a wake-up poll meanwhile
            self._call(self._on_stream)
            failures = 1
            backoff = FIRST_BACKOFF
            await _wait(stop, backoff)

    async def _listen(self, connection: Any, stop: asyncio.Event, *, reconnected: bool) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(self.channel, self._received)
        self.pid = connection.get_server_pid()
        self.connections += 1
        self._listening.set()
        if reconnected:  # what was sent while nobody listened is lost: look again
            logger.info("listening for wake-ups on the state store %s again", self._name)
            self._call(self._on_deliveries)
            self._call(self._on_stream)
        while not stop.is_set() and not lost.is_set():
            await _wait_any(stop, lost, HEALTH_INTERVAL)
            if stop.is_set() or lost.is_set():
                return
            try:
                await asyncio.wait_for(connection.execute("SELECT 1"), HEALTH_TIMEOUT)
            except Exception:  # a connection that cannot answer is as good as lost
                return

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload[1:] == self.token:
            return  # this instance's own commit: its listeners ran already
        if payload[:1] == "s":
            self._call(self._on_stream)
        else:
            self._call(self._on_deliveries)

    def _call(self, callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a listener's error must not stop the wake-ups of the others
            logger.exception("a wake-up listener of the state store %s failed", self._name)


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass


async def _wait_any(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    waits = {asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())}
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


async def _close(connection: Any) -> None:
    try:
        await asyncio.wait_for(connection.close(), 2.0)
    except Exception:  # already broken: nothing more to release than what terminate does
        connection.terminate()
