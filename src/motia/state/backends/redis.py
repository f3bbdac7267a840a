"""Redis state: one store shared by many processes on many machines (``pymotia[redis]``).

Every operation is one call of a Redis *function* from the library in ``redis_functions.lua`` (loaded
with ``FUNCTION LOAD REPLACE``, which Redis keeps in its RDB/AOF like data), so each write, its change
event and its delivery bookkeeping happen atomically on the server in one round trip.

What is supported: one standalone Redis server, 7.0 or newer (a primary; while a failover promotes a
replica at the same address, calls are retried). Redis Cluster is not: the client is not cluster-aware
(it would get ``MOVED`` replies), so a cluster node is refused at start-up with a clear error. The key
layout is ready for it (below); a Cluster backend would also need ``redis.asyncio.RedisCluster``
routing each call by the ``{P}`` tag, the function library loaded on every primary (and again after
a failover or resharding), and tests against a real cluster.

Key layout (``P`` is the ``prefix`` option, default ``motia``; every key starts with the hash tag
``{P}``, so every function call touches one hash slot, as Redis Cluster would require)::

    {P}:meta                hash: events flag, event and delivery counters
    {P}:scopes              zset: scopes holding at least one key, in key order (list_groups)
    {P}:k:<scope>           zset (all scores 0): the scope's keys, for ordered pages (ZRANGE BYLEX)
    {P}:v:<scope>           hash: key -> "version|expires_at|token|json"
    {P}:x:<scope>           zset: key -> expires_at, for keys with a TTL
    {P}:xs                  zset: scopes with keys that have a TTL (purge)
    {P}:events              stream: change events not yet dispatched (the outbox)
    {P}:subs                set: state-trigger subscriptions of every app using the store
    {P}:d:<id>              hash: one pending delivery
    {P}:due:<step>          zset: claimable deliveries of a step, scored by when they become claimable
    {P}:head:<step>\\n<ok>   string / {P}:chain:<step>\\n<ok> list: deliveries sharing an order key
    {P}:pending             hash: step -> unsettled deliveries
    {P}:dead                list: dead letters (JSON)
    {P}:w:<token>           string, expires after timeout + 30 s: the reply to one write, or the ids one claim
                            leased (makes a retry safe)
    {P}:tick:<job>:<ms>     string, expires: the instance that runs one cron tick
    {P}:lease:<name>        string "expires_at|owner": a named lease (kept by Redis LEASE_KEEP s past its ttl)
    {P}:steps               zset: step -> when an app last said it serves it (touch_steps; retention)

One store lives in one hash slot: on a Redis Cluster stores (prefixes) could be spread over shards,
scopes of one store could not. That is the price of committing a write and its change event
atomically, which Cluster allows only inside one slot; a per-scope tag would split them.

Why update is compare-and-set instead of a Lua implementation of the update operations: Redis's Lua
JSON (cjson) reads every number as a double (large ints and exact floats would change) and cannot tell
``[]`` from ``{}``. So ``update`` applies the operations in Python, exactly as the other backends do,
and writes with ``motia1_cas``, which succeeds only if the key still holds the record it started from
(version *and* write token, so a delete and re-create in between is caught). On a mismatch the call
returns the current record, so a retry costs one round trip; recently read records are kept as hints,
so a ``get`` followed by an ``update`` (or updates in a row) usually take one round trip each.

Connection loss: every call is retried with exponential backoff until ``timeout`` seconds have passed,
then :class:`~motia.exceptions.StateBackendUnavailable` is raised. Retrying is safe because each write
carries a unique token, and the store keeps the write's reply under it for a little longer than a
client retries: a write that reached Redis before the connection broke is answered from there, not
applied again, even when other writers changed the key in between. That costs one short-lived key per
write (about 100 bytes for ``timeout`` + 30 s). Reads are simply repeated.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from motia.exceptions import (
    ConfigError,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateError,
    StateTimeout,
    StateValueError,
)
from motia.state.backends._writes import (
    check_age,
    check_lease,
    check_lease_ttl,
    check_steps,
    check_version,
    is_live,
    orphaned_error,
    plan_update,
)
from motia.state.backends.base import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Record,
    StateBackend,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.ops import Operation
from motia.state.urls import mask_url

if TYPE_CHECKING:
    import redis.asyncio

logger = logging.getLogger("motia.state.redis")

#: Records of at most this many bytes are remembered as compare-and-set hints, up to HINT_BYTES in all.
HINT_VALUE_BYTES = 16 * 1024
HINT_BYTES = 8 * 1024 * 1024
#: Expired keys removed per purge call (each call blocks the server while it runs).
PURGE_BATCH = 1000
#: A lease's key outlives its ttl by this long (seconds, server time) before Redis deletes it: expiry is
#: judged by the clients' clocks, so a client clock behind the server's by less than this never sees a
#: lease it should still respect disappear. Only leases nobody released wait this long.
LEASE_KEEP = 600.0

_OPTIONS = {"prefix", "timeout"}


def _import_redis() -> Any:
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError:
        raise ConfigError("the Redis state backend needs the redis package: pip install 'pymotia[redis]'") from None
    return redis


class _Hints:
    """Recently seen records, as starting points for compare-and-set. Only ever a hint: the server
    checks version and token, so a stale hint costs a retry, never a lost update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: OrderedDict[tuple[str, str], tuple[Record, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, scope: str, key: str) -> tuple[Record, bytes] | None:
        with self._lock:
            return self._records.get((scope, key))

    def put(self, scope: str, record: Record, token: bytes) -> None:
        if len(record.data) > HINT_VALUE_BYTES:
            self.forget(scope, record.key)
            return
        with self._lock:
            previous = self._records.pop((scope, record.key), None)
            if previous is not None:
                self._bytes -= len(previous[0].data)
            self._records[(scope, record.key)] = (record, token)
            self._bytes += len(record.data)
            while self._bytes > HINT_BYTES:
                _, (old, _) = self._records.popitem(last=False)
                self._bytes -= len(old.data)

    def forget(self, scope: str, key: str) -> None:
        with self._lock:
            previous = self._records.pop((scope, key), None)
            if previous is not None:
                self._bytes -= len(previous[0].data)


class _Channel:
    """One event loop's client, connection and batching state (touched only on that loop)."""

    __slots__ = ("busy", "client", "closed", "connection", "loading", "queue", "scheduled", "tasks", "watch")

    def __init__(self, client: Any) -> None:
        self.client = client
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


def _expire(task: asyncio.Task[Any] | None, expired: list[bool]) -> None:
    if task is not None and not task.done():
        expired.append(True)
        task.cancel()


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


def _loaded(channel: _Channel, loading: asyncio.Future[Any]) -> None:
    channel.loading = None
    if not loading.cancelled():
        loading.exception()  # each waiting caller gets (and reports) it; no "never retrieved" noise when none waits


def _parse(key: str, raw: bytes) -> tuple[Record, bytes]:
    version, expires_at, token, data = raw.split(b"|", 3)
    return Record(key, data, int(version), float(expires_at) if expires_at else None), token


def _conflict(scope: str, key: str, expected: int, actual: int) -> None:
    check_version(scope, key, Record(key, b"", actual, None) if actual else None, expected)


def _time(seconds: float) -> str:
    return repr(float(seconds))


class RedisBackend(StateBackend):
    """State in a Redis server, 7.0 or newer (the store is a Redis function library)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "motia",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = _import_redis()
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - _OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for state URL {mask_url(url)!r} (known: prefix, timeout)"
            )
        prefix = query.get("prefix", prefix)
        try:
            timeout = float(query.get("timeout", timeout))
        except ValueError:
            raise ConfigError(f"invalid state URL {mask_url(url)!r}: timeout must be a number of seconds") from None
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(f"invalid Redis key prefix {prefix!r}: it must be non-empty, without braces")
        if not timeout > 0:
            raise ConfigError(f"invalid state URL {mask_url(url)!r}: timeout must be positive")
        self.prefix = prefix
        self.timeout = timeout
        self._marker_ms = round((timeout + 30.0) * 1000)
        self._clock = clock
        self._connect_url = parts._replace(query="").geturl()
        options: dict[str, Any] = {}
        if prefix != "motia":
            options["prefix"] = prefix
        if timeout != 10.0:
            options["timeout"] = f"{timeout:g}"
        self.url = mask_url(self._connect_url) + (f"?{urlencode(options)}" if options else "")
        self._meta = f"{{{prefix}}}:meta"
        self._library = resources.files("motia.state.backends").joinpath("redis_functions.lua").read_text()
        self._hints = _Hints()
        self._tokens = itertools.count()
        self._token_prefix = os.urandom(6).hex()
        self._channels: dict[asyncio.AbstractEventLoop, _Channel] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._events_here = False  # this process enabled events: wake local workers after writes
        self._check_server()

    # -- connection -------------------------------------------------------------------------------

    def _check_server(self) -> None:
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
                    channel = self._channels[loop] = _Channel(client)
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

    async def _run(self, send: Callable[[_Channel], Any], what: str) -> Any:
        """Run ``send(channel)``; on connection trouble retry with backoff until ``timeout`` passes.

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
            # A bare timer that cancels this task, instead of asyncio.timeout() (which costs several
            # times as much per call); an interrupted read makes redis-py drop that connection.
            expired: list[bool] = []
            timer = loop.call_at(deadline, _expire, task, expired)
            try:
                if reload:
                    doing = f"{what} (loading the function library again: the server had lost it)"
                    await self._load_library(channel)
                    reload, reloaded, doing = False, True, what
                return await send(channel)
            except asyncio.CancelledError:
                if not expired or task is None:
                    raise
                task.uncancel()
                raise StateTimeout(f"{doing}: Redis at {self.url} did not answer within {self.timeout:g} s") from None
            except redis.exceptions.RedisError as exc:
                error = exc
            finally:
                timer.cancel()
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

    async def _call(self, function: str, *args: Any) -> Any:
        return await self._command("FCALL", function, 1, self._meta, *args)

    async def _write(self, function: str, token: str, *args: Any) -> Any:
        """Call a write function: applied at most once for ``token``, however often a retry repeats it.
        The store keeps the reply under the token a little longer than this client retries."""
        return await self._call(function, token, self._marker_ms, *args)

    async def _command(self, *command: Any) -> Any:
        if command[0] == "FCALL":
            what = str(command[1]).removeprefix("motia1_")
            what = "update" if what == "cas" else what
        else:
            what = str(command[0])
        return await self._run(lambda channel: self._send(channel, command), what)

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

    def _token(self) -> str:
        return f"{self._token_prefix}{next(self._tokens):x}"

    def _wrote(self) -> None:
        if self._events_here:
            self._notify_listeners()

    # -- state ------------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Record | None:
        # A plain HGET: a read needs no script. Only a key found expired goes through motia1_get,
        # which removes it and fires its "expired" event atomically.
        raw = await self._command("HGET", f"{{{self.prefix}}}:v:{scope}", key)
        if raw is None:
            self._hints.forget(scope, key)
            return None
        record, token = _parse(key, raw)
        if record.expires_at is not None and record.expires_at <= self._clock():
            live, token = await self._fetch(scope, key)
            self._wrote()
            if live is None:
                self._hints.forget(scope, key)
                return None
            record = live  # another process wrote it again since our read
        self._hints.put(scope, record, token)
        return record

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        now = self._clock()
        token = self._token()
        expires_at = now + ttl if ttl is not None else None
        reply = await self._write(
            "motia1_set",
            token,
            scope,
            key,
            data,
            "" if expires_at is None else _time(expires_at),
            "" if if_version is None else if_version,
            _time(now),
        )
        if reply[0] == 0:
            _conflict(scope, key, if_version or 0, int(reply[1]))
        self._wrote()
        version = int(reply[1])
        self._hints.put(scope, Record(key, data, version, expires_at), token.encode())
        return WriteResult(reply[2] if reply[0] == 1 else None, data, version)

    async def _fetch(self, scope: str, key: str) -> tuple[Record | None, bytes]:
        raw = await self._call("motia1_get", scope, key, _time(self._clock()))
        if raw is None:
            return None, b""
        return _parse(key, raw)

    async def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> WriteResult:
        hint = self._hints.get(scope, key)
        fresh = hint is None
        current, token = (None, b"") if hint is None else hint
        if fresh:
            current, token = await self._fetch(scope, key)
        while True:
            now = self._clock()
            if current is not None and not is_live(current.expires_at, now):
                current, token = None, b""
            try:
                record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, now)
            except StateError:
                if fresh:
                    raise
                current, token = await self._fetch(scope, key)  # judge against the stored value, not a hint
                fresh = True
                continue
            if record is None:  # no operations: report what is stored now
                if fresh:
                    return result
                current, token = await self._fetch(scope, key)
                fresh = True
                continue
            new_token = self._token()
            reply = await self._write(
                "motia1_cas",
                new_token,
                scope,
                key,
                0 if current is None else current.version,
                token,
                record.data,
                "" if record.expires_at is None else _time(record.expires_at),
                _time(now),
            )
            if reply[0] != 0:
                self._wrote()
                self._hints.put(scope, record, new_token.encode())
                return result
            current, token = (None, b"") if reply[1] is None else _parse(key, reply[1])
            fresh = True

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        reply = await self._write(
            "motia1_delete", self._token(), scope, key, "" if if_version is None else if_version, _time(self._clock())
        )
        self._hints.forget(scope, key)
        if reply[0] == 0:
            _conflict(scope, key, if_version or 0, int(reply[1]))
        self._wrote()
        old: bytes | None = reply[1]
        return old

    async def clear(self, scope: str) -> int:
        removed = int(await self._write("motia1_clear", self._token(), scope, _time(self._clock())))
        self._wrote()
        return removed

    async def values(self, scope: str) -> list[bytes]:
        return [record.data for record in await self.items(scope, prefix=None, after=None, limit=None)]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        if limit == 0:
            return []
        # "surrogatepass": a lone surrogate (no stored key has one) encodes to bytes that sort where its code
        # point does, so a bound holding one still orders right and a prefix holding one matches nothing.
        low = b"-" if after is None else b"(" + after.encode("utf-8", "surrogatepass")
        high = b"+"
        if prefix:
            if after is None or after < prefix:
                low = b"[" + prefix.encode("utf-8", "surrogatepass")
            high = b"(" + prefix.encode("utf-8", "surrogatepass") + b"\xff"  # never in UTF-8: above all with prefix
        reply = await self._call("motia1_items", scope, low, high, limit or 0, _time(self._clock()))
        records = []
        for position in range(0, len(reply), 2):
            record, _ = _parse(reply[position].decode(), reply[position + 1])
            records.append(record)
        return records

    async def count(self, scope: str) -> int:
        return int(await self._call("motia1_count", scope, _time(self._clock())))

    async def scopes(self) -> list[str]:
        return [scope.decode() for scope in await self._call("motia1_scopes", _time(self._clock()))]

    async def purge_expired(self) -> int:
        removed = 0
        while True:
            batch = int(await self._call("motia1_purge", _time(self._clock()), PURGE_BATCH))
            removed += batch
            if batch < PURGE_BATCH:
                break
        if removed:
            self._wrote()
        return removed

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        now = self._clock()
        args: list[Any] = [_time(now), len(expected)]
        for (scope, key), version in expected.items():
            args += (scope, key, version)
        args.append(len(writes))
        for write in writes:
            if write.data is None:
                args += (write.scope, write.key, "d", b"", "")
            elif write.ttl is not None:
                args += (write.scope, write.key, "t", write.data, _time(now + write.ttl))
            else:
                args += (write.scope, write.key, "k" if write.keep_expiry else "p", write.data, "")
        reply = await self._write("motia1_commit", self._token(), *args)
        for scope, key in expected:
            self._hints.forget(scope, key)
        if reply[0] == 0:
            _conflict(reply[1].decode(), reply[2].decode(), int(reply[3]), int(reply[4]))
        self._wrote()

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        done = await self._write(
            "motia1_restore",
            self._token(),
            scope,
            key,
            data,
            "" if version is None else version,
            "" if expires_at is None else _time(expires_at),
            "1" if replace else "0",
            _time(self._clock()),
        )
        self._hints.forget(scope, key)
        self._wrote()
        return bool(done)

    # -- delivery ---------------------------------------------------------------------------------

    async def enable_events(self) -> None:
        await self._call("motia1_enable_events")
        self._events_here = True

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        encoded = [orjson.dumps([s.step, s.scope, s.key]) for s in subscriptions]
        consumed, added = await self._call("motia1_dispatch", limit, _time(self._clock()), *encoded)
        if added:
            self._notify_listeners()
        return int(consumed)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        if not deliveries:
            return 0
        args: list[Any] = [_time(self._clock())]
        for new in deliveries:
            args += (new.id, new.step, new.kind, new.payload, new.order_key or "")
        added = int(await self._call("motia1_enqueue", *args))
        if added:
            self._notify_listeners()
        return added

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        if not steps or limit <= 0:
            return []
        # A token, as for writes: a retried claim (its reply lost) returns what the first attempt leased.
        reply = await self._write(
            "motia1_claim", self._token(), owner, limit, _time(lease), _time(self._clock()), *steps
        )
        return [
            Delivery(
                reply[i].decode(),
                reply[i + 1].decode(),
                reply[i + 2].decode(),
                reply[i + 3],
                int(reply[i + 4]),
                float(reply[i + 5]),
            )
            for i in range(0, len(reply), 6)
        ]

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        if ids:
            await self._call("motia1_extend", owner, _time(self._clock() + lease), *ids)

    async def _settle(self, delivery_id: str, owner: str, outcome: str, delay: float, error: str) -> bool:
        now = self._clock()
        # An exception's text may hold lone surrogates (a file name decoded with surrogateescape): keep
        # them visible as escapes rather than fail to settle the delivery.
        error = error.encode("utf-8", "backslashreplace").decode()
        done = bool(
            await self._call("motia1_settle", delivery_id, owner, outcome, _time(now + delay), error, _time(now))
        )
        if done and outcome != "retry":
            self._notify_listeners()  # a later delivery of the same key may be ready now
        return done

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        return await self._settle(delivery_id, owner, "complete", 0.0, "")

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        return await self._settle(delivery_id, owner, "retry", delay, error)

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        return await self._settle(delivery_id, owner, "dead", 0.0, error)

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        letters = []
        for raw in await self._call("motia1_dead", step or "", limit):
            delivery_id, step_name, kind, payload, attempts, error, created_at, failed_at = orjson.loads(raw)
            letters.append(
                DeadLetter(
                    delivery_id,
                    step_name,
                    kind,
                    payload.encode(),
                    int(attempts),
                    error,
                    float(created_at),
                    float(failed_at),
                )
            )
        return letters

    async def pending(self, step: str | None = None) -> int:
        return int(await self._call("motia1_pending", step or ""))

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        name = f"{{{self.prefix}}}:tick:{job}:{tick_millis(tick)}"
        token = self._token()
        if await self._command("SET", name, token, "NX", "PX", max(1, round(hold * 1000))) is not None:
            return True
        # Taken: by another instance, or by this very call if its reply was lost and the SET was retried.
        return bool(await self._command("GET", name) == token.encode())

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        check_lease(name, owner)
        ttl = check_lease_ttl(ttl)
        now = self._clock()
        keep = max(1, round((ttl + LEASE_KEEP) * 1000))
        return bool(
            await self._write("motia1_acquire_lease", self._token(), name, owner, _time(now), _time(now + ttl), keep)
        )

    async def release_lease(self, name: str, owner: str) -> bool:
        check_lease(name, owner)
        return bool(await self._write("motia1_release_lease", self._token(), name, owner, _time(self._clock())))

    async def touch_steps(self, steps: Sequence[str]) -> None:
        names = check_steps(steps)
        if names:
            now = _time(self._clock())
            await self._command(
                "ZADD", f"{{{self.prefix}}}:steps", "GT", *(part for step in names for part in (now, step))
            )

    async def prune(self, *, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        if dead_letter_age is None and step_age is None:
            return PruneResult(0, 0, 0)
        now = self._clock()
        stale: list[Any] = []
        if step_age is not None:
            # The error text needs each step's last-seen time, formatted here; the function checks again
            # that each step is still stale, so a step touched in between is kept.
            reply = await self._command(
                "ZRANGE", f"{{{self.prefix}}}:steps", "-inf", f"({_time(now - step_age)}", "BYSCORE", "WITHSCORES"
            )
            for position in range(0, len(reply), 2):
                step = reply[position].decode()
                stale += (step, orphaned_error(step, float(reply[position + 1])))
        removed, forgotten, orphaned = await self._write(
            "motia1_prune",
            self._token(),
            _time(now),
            "" if dead_letter_age is None else _time(now - dead_letter_age),
            "" if step_age is None else _time(now - step_age),
            *stale,
        )
        if orphaned:
            self._notify_listeners()
        return PruneResult(int(removed), int(forgotten), int(orphaned))

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
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
