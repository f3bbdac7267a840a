"""pymotia's small Redis client: RESP packing, one channel per event loop, auto-pipelining, retries within
a deadline, and the translation of driver errors. redis-py provides the connections and the parsing.

Connection loss: every call is retried with exponential backoff until ``timeout`` seconds have passed,
then :class:`~motia.exceptions.StateBackendUnavailable` is raised. Retrying is safe because each write
carries a unique token, and the store keeps the write's reply under it for a little longer than a
client retries: a write that reached Redis before the connection broke is answered from there, not
applied again, even when other writers changed the key in between. That costs one short-lived key per
write (about 100 bytes for ``timeout`` + 30 s). Reads are simply repeated.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import logging
import os
import threading
from collections.abc import AsyncGenerator
from importlib import resources
from typing import TYPE_CHECKING, Any

from motia.exceptions import (
    ConfigError,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateError,
    StateTimeout,
    StateValueError,
)
from motia.state.observe import current_trace

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger("motia.state.redis")


def _import_redis() -> Any:
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError:
        raise ConfigError("the Redis state backend needs the redis package: pip install 'pymotia[redis]'") from None
    return redis


class _Deadlines:
    """The deadlines of one event loop's calls in flight, kept by one timer instead of one timer per call.

    A call's deadline is the same ``timeout`` after its start for every call, and a call usually ends
    long before it, so arming and cancelling a loop timer per call (a few microseconds on uvloop, a heap
    entry on asyncio) is paid for nothing. Here a call costs a dict entry; the one timer fires at the
    earliest deadline armed, cancels the calls past theirs and re-arms for the next.
    """

    __slots__ = ("loop", "calls", "timer", "when")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: id -> [deadline, task, expired]: a call in flight that the timer cancels at ``deadline``.
        self.calls: dict[int, list[Any]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.when = 0.0

    def arm(self, deadline: float, task: asyncio.Task[Any] | None) -> list[Any]:
        """Cancel ``task`` at ``deadline`` unless :meth:`disarm` is called first; the entry's third item
        says whether it was (so the caller can tell its deadline from any other cancellation)."""
        entry = [deadline, task, False]
        self.calls[id(entry)] = entry
        if self.timer is None or deadline < self.when:
            self._schedule(deadline)
        return entry

    def disarm(self, entry: list[Any]) -> None:
        del self.calls[id(entry)]

    def _schedule(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.when = when
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        earliest: float | None = None
        for key, entry in list(self.calls.items()):
            if entry[0] <= now:
                del self.calls[key]
                task = entry[1]
                if task is not None and not task.done():
                    entry[2] = True
                    task.cancel()
            elif earliest is None or entry[0] < earliest:
                earliest = entry[0]
        if earliest is not None:
            self._schedule(earliest)


class _Channel:
    """One event loop's client, connection and batching state (touched only on that loop)."""

    __slots__ = (
        "busy",
        "client",
        "closed",
        "connection",
        "deadlines",
        "loading",
        "queue",
        "scheduled",
        "tasks",
        "watch",
    )

    def __init__(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.deadlines = _Deadlines(loop)
        self.busy = False
        self.connection: Any = None  # the loop's own connection, for calls when nothing else is in flight
        self.scheduled = False
        self.queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.loading: asyncio.Future[Any] | None = None  # a FUNCTION LOAD in flight, shared by every caller
        self.watch: AsyncGenerator[None, None] | None = None  # closes the client when the loop shuts down
        self.closed = False


def _pack(command: tuple[Any, ...]) -> bytes:
    """The command in RESP. Our arguments are only ``str``, ``bytes`` and ``int``; redis-py's general
    packer checks and converts each argument's type and took a fifth of a ``set``'s client time."""
    packed = bytearray(b"*%d\r\n" % len(command))
    for argument in command:
        kind = type(argument)
        if kind is str:
            try:
                argument = argument.encode()
            except UnicodeEncodeError:
                raise StateValueError(
                    f"{argument!r} contains a lone surrogate and cannot be sent to Redis as UTF-8"
                ) from None
        elif kind is int:
            argument = b"%d" % argument
        packed += b"$%d\r\n%b\r\n" % (len(argument), argument)
    return bytes(packed)


@functools.cache
def _doing(function: str) -> str:
    """What a call of the library's ``function`` is called in messages (``motia1_cas`` is an update)."""
    what = function.removeprefix("motia1_")
    return "update" if what == "cas" else what


def _start(generator: AsyncGenerator[None, None]) -> None:
    """Run an async generator up to its first ``yield``, at once. That first step registers it with the
    running loop, which closes it (running its ``finally``) when the loop shuts down its async generators."""
    try:
        generator.asend(None).send(None)
    except StopIteration:
        return
    raise RuntimeError("the generator awaited before its first yield")  # pragma: no cover


async def _close_watch(channel: _Channel) -> None:
    if channel.watch is not None:
        await channel.watch.aclose()


#: The prefix of the library's function names in pymotia's source (``motia1_set``...). What is loaded into
#: Redis is named after the library's text instead (:func:`library`), and calls are renamed to match.
SOURCE_PREFIX = "motia1_"


@functools.cache
def library() -> tuple[str, str]:
    """The function library's name and text: ``functions.lua`` with ``streams.lua`` and ``operate.lua``
    appended. One library, loaded (and reloaded after a ``FUNCTION FLUSH``) in one ``FUNCTION LOAD``, so the
    stream and operator functions share the delivery helpers and can never be missing while the rest is loaded.

    The name is ``motia_`` and a digest of the text, and so are its functions' names: two pymotia versions
    whose functions differ (arguments, replies) can use one Redis server side by side, each calling its own
    functions, where one shared name would have each ``FUNCTION LOAD REPLACE`` the other's library under it.
    A library of an older version stays loaded until removed (``FUNCTION DELETE``); it takes no keys."""
    package = resources.files("motia.state.backends.redis")
    text = "\n".join(package.joinpath(name).read_text() for name in ("functions.lua", "streams.lua", "operate.lua"))
    name = "motia_" + hashlib.sha256(text.encode()).hexdigest()[:12]
    header = "#!lua name=motia1\n"
    if not text.startswith(header):  # pragma: no cover - guards an edit of functions.lua
        raise RuntimeError(f"functions.lua must start with {header!r}")
    text = f"#!lua name={name}\n" + text[len(header) :].replace(f"'{SOURCE_PREFIX}", f"'{name}_")
    if SOURCE_PREFIX in text:  # pragma: no cover - guards an edit of the .lua files
        raise RuntimeError(f"a function name the library registers is not quoted as '{SOURCE_PREFIX}...'")
    return name, text


@functools.cache
def function_name(function: str) -> str:
    """The loaded library's name for the function the source calls ``function`` (``motia1_set``)."""
    if not function.startswith(SOURCE_PREFIX):
        raise ValueError(f"not a function of pymotia's library: {function!r}")
    return f"{library()[0]}_{function[len(SOURCE_PREFIX) :]}"


def _loaded(channel: _Channel, loading: asyncio.Future[Any]) -> None:
    channel.loading = None
    if not loading.cancelled():
        loading.exception()  # each waiting caller gets (and reports) it; no "never retrieved" noise when none waits


class RedisClient:
    """The connection of a :class:`~motia.state.backends.redis.RedisBackend` to its server: every command goes
    through :meth:`call`, :meth:`write` or :meth:`command`, on the calling event loop's channel."""

    def __init__(self, redis: Any, connect_url: str, *, url: str, timeout: float, meta: str) -> None:
        self._redis = redis
        self._connect_url = connect_url
        #: The store's URL as shown in messages (password masked).
        self.url = url
        self.timeout = timeout
        self._meta = meta
        self._marker_ms = round((timeout + 30.0) * 1000)
        self._library = library()[1]
        self._tokens = itertools.count()
        self._token_prefix = os.urandom(6).hex()
        self._channels: dict[asyncio.AbstractEventLoop, _Channel] = {}
        self._lock = threading.Lock()
        self._closed = False

    def check_server(self) -> None:
        """Fail closed at start-up: an unreachable server or a wrong password is an error now, naming
        the URL, not an empty store later. Also loads the function library."""
        redis = self._redis
        client = redis.Redis.from_url(
            self._connect_url, socket_timeout=self.timeout, socket_connect_timeout=min(self.timeout, 5.0)
        )
        try:
            info = client.info("server")
            version = tuple(int(part) for part in str(info.get("redis_version", "0")).split(".")[:2])
            if version < (7, 0):
                raise StateBackendUnavailable(
                    f"Redis at {self.url} is version {info.get('redis_version')}; pymotia needs Redis 7 or newer"
                )
            if info.get("redis_mode") == "cluster":
                raise StateBackendUnavailable(
                    f"Redis at {self.url} is a Redis Cluster node: Redis Cluster is not supported (the client is "
                    "not cluster-aware); use a standalone Redis server"
                )
            client.function_load(self._library, replace=True)
        except redis.exceptions.RedisError as exc:
            raise self._translate(exc, "cannot open the state store") from exc
        finally:
            client.close()

    def _channel(self) -> _Channel:
        """This event loop's channel (redis-py's asyncio connections belong to the loop that made them)."""
        loop = asyncio.get_running_loop()
        channel = self._channels.get(loop)
        if channel is None:
            with self._lock:
                if self._closed:
                    raise StateClosedError(f"the state store {self.url} is closed")
                channel = self._channels.get(loop)
                if channel is None:
                    redis = self._redis
                    # No socket_timeout: redis-py would wrap every send in asyncio.wait_for (a task per
                    # command); _run bounds each call with one timer instead. Retries are ours too.
                    client = redis.asyncio.Redis.from_url(
                        self._connect_url,
                        protocol=2,
                        socket_timeout=None,
                        socket_keepalive=True,
                        socket_connect_timeout=min(self.timeout, 5.0),
                        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
                    )
                    # A loop closed without shutting down its async generators (loop.close() alone)
                    # never let its channel's watch run: drop the entry; its sockets go with the loop.
                    for closed in [other for other in self._channels if other.is_closed()]:
                        del self._channels[closed]
                    channel = self._channels[loop] = _Channel(client, loop)
                    channel.watch = self._watch(loop, channel)
                    _start(channel.watch)
        return channel

    async def _watch(self, loop: asyncio.AbstractEventLoop, channel: _Channel) -> AsyncGenerator[None, None]:
        """Lives as long as ``loop``: when the loop shuts down (the end of ``asyncio.run``, ``Runner.close()``,
        ``loop.shutdown_asyncgens()``) it closes the loop's client. Without it every short-lived loop that
        used the store (200 ``asyncio.run`` calls in a script) left a connection open until the process ended."""
        try:
            yield
        finally:
            with self._lock:
                if self._channels.get(loop) is channel:
                    del self._channels[loop]
            await self._close_channel(channel)

    async def _close_channel(self, channel: _Channel) -> None:
        if channel.closed:
            return
        channel.closed = True
        try:
            await channel.client.aclose()
        except (self._redis.exceptions.RedisError, OSError) as exc:
            logger.warning("Redis at %s: closing a connection failed: %s", self.url, exc, exc_info=True)

    def _translate(self, exc: Exception, doing: str) -> StateBackendError:
        redis = self._redis
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            return StateBackendError(
                f"{doing}: Redis at {self.url} is out of memory (maxmemory reached, and its eviction policy keeps "
                f"every key): the call was refused and changed nothing; reads still work: {exc}"
            )
        if isinstance(exc, redis.exceptions.AuthenticationError):
            return StateBackendUnavailable(f"{doing}: Redis at {self.url} refused the credentials: {exc}")
        if isinstance(exc, redis.exceptions.TimeoutError):
            return StateTimeout(f"{doing}: Redis at {self.url} did not answer within {self.timeout:g} s: {exc}")
        if isinstance(exc, redis.exceptions.ConnectionError | OSError):
            return StateBackendUnavailable(f"{doing}: Redis at {self.url} is unreachable: {exc}")
        return StateBackendError(f"{doing}: Redis at {self.url} failed: {exc}")

    def _retryable(self, exc: Exception) -> bool:
        redis = self._redis
        if isinstance(exc, redis.exceptions.AuthenticationError):
            return False
        if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | OSError):
            return True  # includes BusyLoadingError: the server is reading its AOF after a restart
        if isinstance(exc, redis.exceptions.ReadOnlyError):
            return True  # a failover in progress: the new primary is being promoted
        return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(("BUSY", "TRYAGAIN"))

    async def _run(self, command: tuple[Any, ...], what: str) -> Any:
        """Send ``command``; on connection trouble retry with backoff until ``timeout`` passes.

        Everything a call sends to Redis goes through here, including reloading the function library when
        the server lost it (restarted without persistence, ``FUNCTION FLUSH``): one deadline bounds the
        call, and every driver error is translated, naming what was being done."""
        redis = self._redis
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        deadline = loop.time() + self.timeout
        delay = 0.02
        warned = False
        reload = False  # the server answered "Function not found": load the library before the call
        reloaded = False
        while True:
            if self._closed:
                raise StateClosedError(f"the state store {self.url} is closed")
            channel = self._channel()
            doing = what
            # The loop's deadline keeper cancels this task at the deadline, instead of asyncio.timeout()
            # (which costs several times as much per call); an interrupted read makes redis-py drop that
            # connection. Armed only while sending: the backoff below ends before the deadline itself.
            entry = channel.deadlines.arm(deadline, task)
            try:
                if reload:
                    doing = f"{what} (loading the function library again: the server had lost it)"
                    await self._load_library(channel)
                    reload, reloaded, doing = False, True, what
                return await self._send(channel, command)
            except asyncio.CancelledError:
                if not entry[2] or task is None:
                    raise
                task.uncancel()
                raise StateTimeout(f"{doing}: Redis at {self.url} did not answer within {self.timeout:g} s") from None
            except redis.exceptions.RedisError as exc:
                error = exc
            finally:
                if not entry[2]:
                    channel.deadlines.disarm(entry)
            if isinstance(error, redis.exceptions.ResponseError) and "Function not found" in str(error):
                reload = True
                if not reloaded:
                    continue  # at once the first time; if it is lost again right away, back off as below
            elif not self._retryable(error):
                raise self._translate(error, doing) from error
            now = loop.time()
            if not warned:
                warned = True
                logger.warning("Redis at %s: %s; retrying for up to %g s", self.url, error, deadline - now)
            if now >= deadline:
                raise self._translate(error, doing) from error
            await asyncio.sleep(min(delay, max(deadline - now, 0.0)))
            delay = min(delay * 2, 1.0)

    async def _load_library(self, channel: _Channel) -> None:
        """``FUNCTION LOAD REPLACE`` the library, once per loop however many calls found it missing
        (after a ``FUNCTION FLUSH`` every call of a pipelined batch does)."""
        loading = channel.loading
        if loading is None:
            loading = channel.loading = asyncio.ensure_future(
                self._send(channel, ("FUNCTION", "LOAD", "REPLACE", self._library))
            )
            loading.add_done_callback(lambda done: _loaded(channel, done))
        await asyncio.shield(loading)

    async def call(self, function: str, *args: Any) -> Any:
        """Call the library's ``function`` (``FCALL``) with the store's one key and ``args``."""
        return await self._run(("FCALL", function_name(function), 1, self._meta, *args), _doing(function))

    async def write(self, function: str, token: str, *args: Any) -> Any:
        """Call a write function: applied at most once for ``token``, however often a retry repeats it.
        The store keeps the reply under the token a little longer than this client retries."""
        # The caller's traceparent, last: the library keeps it with the write's events (state/observe.py).
        trace = current_trace.get() or ""
        command = ("FCALL", function_name(function), 1, self._meta, token, self._marker_ms, *args, trace)
        return await self._run(command, _doing(function))

    async def command(self, *command: Any) -> Any:
        """Send one command, retried on connection trouble within ``timeout``."""
        if command[0] == "FCALL":
            function = str(command[1])
            return await self._run(("FCALL", function_name(function), *command[2:]), _doing(function))
        return await self._run(command, str(command[0]))

    async def blocking(self, *command: Any, block: float) -> Any:
        """Send a command that the server holds up to ``block`` seconds (``XREAD BLOCK``), on a connection
        of its own from this loop's pool: the pipelined calls of everyone else never wait behind it.

        Not retried: a caller that waits does so in a loop and looks again through :meth:`command`, which
        retries. A read cut short (cancelled, timed out, failed) drops its connection, whose reply may
        still be on its way, so the pool only ever holds connections in step with the server."""
        redis = self._redis
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")
        pool: Any = self._channel().client.connection_pool
        what = str(command[0])
        connection: Any = None
        finished = False
        try:
            async with asyncio.timeout(block + self.timeout):
                connection = await pool.get_connection()
                await connection.send_packed_command(_pack(command), check_health=False)
                reply = await connection.read_response()
            finished = True
            return reply
        except TimeoutError:
            raise StateTimeout(f"{what}: Redis at {self.url} did not answer within {self.timeout:g} s") from None
        except redis.exceptions.RedisError as exc:
            if self._closed:  # aclose() dropped the connection under the read
                raise StateClosedError(f"the state store {self.url} is closed") from None
            raise self._translate(exc, what) from exc
        finally:
            if connection is not None:
                try:
                    if not finished:
                        await connection.disconnect(nowait=True)
                finally:
                    await pool.release(connection)

    async def _send(self, channel: _Channel, command: tuple[Any, ...]) -> Any:
        """One command. When the loop has no other call in flight it goes straight over the loop's own
        connection (redis-py's connection: packing, parsing, connecting, but not its pool and retry
        wrappers, which cost more than the round trip and which ``_run`` replaces). While a call is in
        flight, further calls queue up and go out together as one pipeline: that is what makes many
        concurrent tasks faster than one."""
        loop = asyncio.get_running_loop()
        if not channel.busy:
            channel.busy = True
            try:
                connection = channel.connection
                if connection is None:
                    pool: Any = channel.client.connection_pool
                    connection = channel.connection = await pool.get_connection()
                await connection.send_packed_command(_pack(command), check_health=False)
                return await connection.read_response()
            finally:
                channel.busy = False  # also after a failure: redis-py has dropped a connection it could not read
                if channel.queue and not channel.scheduled:
                    channel.scheduled = True
                    loop.call_soon(self._flush, channel)
        future: asyncio.Future[Any] = loop.create_future()
        channel.queue.append((command, future))
        if not channel.scheduled:
            channel.scheduled = True
            loop.call_soon(self._flush, channel)
        return await future

    def _flush(self, channel: _Channel) -> None:
        channel.scheduled = False
        batch, channel.queue = channel.queue, []
        batch = [call for call in batch if not call[1].done()]  # a caller may have timed out
        if batch:
            task = asyncio.get_running_loop().create_task(self._send_batch(channel.client, batch))
            channel.tasks.add(task)
            task.add_done_callback(channel.tasks.discard)

    async def _send_batch(self, client: redis.asyncio.Redis, batch: list[tuple[tuple[Any, ...], Any]]) -> None:
        """Send queued calls as one pipeline over a pooled connection. Each command is packed on its own,
        so one that cannot be sent fails its own caller only (redis-py's pipeline packs them all at once:
        one bad argument failed every call of the batch), and each reply, an error reply included, goes to
        its own caller."""
        redis = self._redis
        packed: list[bytes] = []
        waiting: list[asyncio.Future[Any]] = []
        for command, future in batch:
            try:
                packed.append(_pack(command))
            except StateError as exc:
                future.set_exception(exc)
            else:
                waiting.append(future)
        if not waiting:
            return
        pool: Any = client.connection_pool
        connection: Any = None
        try:
            connection = await pool.get_connection()
            await connection.send_packed_command(b"".join(packed), check_health=False)
            for future in waiting:  # read every reply, also of callers that gave up, to keep the connection in step
                try:
                    result = await connection.read_response()
                except redis.exceptions.ResponseError as exc:
                    if not future.done():
                        future.set_exception(exc)
                else:
                    if not future.done():
                        future.set_result(result)
        except BaseException as exc:  # every caller still waiting gets the failure and decides (retry or raise)
            error = exc if isinstance(exc, Exception) else redis.exceptions.ConnectionError(repr(exc))
            for future in waiting:
                if not future.done():
                    future.set_exception(error)
            if connection is not None:
                await connection.disconnect(nowait=True)  # replies may still be on their way: out of step
            if not isinstance(exc, Exception):
                raise
        finally:
            if connection is not None:
                await pool.release(connection)

    def token(self) -> str:
        """A new write token, unique across processes (see :meth:`write`)."""
        return f"{self._token_prefix}{next(self._tokens):x}"

    async def aclose(self) -> None:
        """Close every event loop's connection that can be closed from here. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            channels, self._channels = self._channels, {}
        current = asyncio.get_running_loop()
        for loop, channel in channels.items():
            # Closing the watch closes the client (in its finally) and takes it off the loop's generators.
            if loop is current:
                await _close_watch(channel)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(_close_watch(channel), loop)
                await asyncio.wrap_future(future)
            # a client of a loop that has stopped cannot be closed from here; its sockets die with it
