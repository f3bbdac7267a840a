"""Connections to the PostgreSQL server: one pool per event loop, transactions retried on connection loss, and
the translation of driver errors. (The URL and its options: :mod:`~motia.state.backends.postgres.settings`.)

**Pools.** asyncpg connections belong to the event loop that made them, and a backend is used from several
(the blocking twin :mod:`motia.state.sync` runs a private loop; scripts call ``asyncio.run`` many times). So
each loop gets its own small pool, made on the loop's first call and closed when that loop shuts down its
async generators (the end of ``asyncio.run``), or by :meth:`PostgresConnections.aclose`.

**Transactions, for every write (the delivery and stream writes too).** ``await self._transact(body, *args,
what=...)`` runs ``await body(tx, *args)`` in one transaction on a pooled connection and returns its result;
``tx`` is a :class:`Tx`: ``tx.conn`` (the asyncpg connection), ``tx.now`` (the clock, read once),
``tx.record_events`` (whether writes must record change events: read in the transaction, under a share lock
on the flag row, see :mod:`~motia.state.backends.postgres.schema`) and ``tx.notify`` (set it when the
transaction recorded events or added deliveries: local listeners are called after the commit, and
:meth:`PostgresConnections._before_commit` runs inside the transaction, a hook for ``NOTIFY``).
``body`` may run more than once: keep its effects inside the transaction, and raise to roll it back.

- A lost connection, a server restarting (``57P01``/``57P03``), a serialization failure or deadlock
  (class ``40``) and a unique violation (two writers creating one key at once: the loser sees the winner's
  row when run again) roll the transaction back and run it again, with backoff, until ``timeout`` has passed;
  then :class:`~motia.exceptions.StateBackendUnavailable` (or :class:`~motia.exceptions.StateTimeout`).
- **A retried write is never applied twice.** Each attempt inserts a random commit token into
  ``motia_commits`` in its transaction (fused into its first statement: no extra round trip). If the
  connection is lost during the ``COMMIT`` itself, the outcome is unknown; a new connection probes for the
  token by inserting it again (``ON CONFLICT DO NOTHING``, rolled back): a conflict means the attempt
  committed, and its result is returned (the write applied, once); no conflict means it did not, and the
  write runs again; while the attempt is still in progress on the server, the probe waits for it (the
  primary key makes it). Transaction ids (``txid_status``) cannot prove this: after a crash the server may
  hand the id of a transaction that never became durable to another one, which then shows "committed".
  Tokens are kept :data:`COMMIT_TOKENS_KEPT` seconds (any call's deadline must end before; a longer
  ``timeout`` is refused), and deleted by the writes of each process about once a minute.
- Reads (``await self._fetch(sql, *args)``) are retried in the same way; they change nothing.

**Errors.** Driver errors never leave this module's callers: a lost or refused connection becomes
:class:`~motia.exceptions.StateBackendUnavailable`, a wrong password too (not retried), anything else
:class:`~motia.exceptions.StateBackendError`; each message names the masked URL and what was being done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

from motia.exceptions import (
    ConfigError,
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateError,
    StateTimeout,
    StateValueError,
)
from motia.state.backends.postgres.settings import MAX_TIMEOUT, PostgresSettings
from motia.state.observe import current_trace

logger = logging.getLogger("motia.state.postgres")

T = TypeVar("T")

#: Connections per event loop at most. A write holds one for its transaction (a few round trips).
POOL_SIZE = 10
#: First and longest pause between retries after a lost connection.
RETRY_PAUSE = 0.02
RETRY_PAUSE_MAX = 1.0


def import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise ConfigError(
            "the PostgreSQL state backend needs the asyncpg package: pip install 'pymotia[postgres]'"
        ) from None
    return asyncpg


class Tx:
    """One attempt of one transaction, handed to the body of :meth:`PostgresConnections._transact`.

    :meth:`start` inserts the attempt's commit token and, when ``read_flag``, reads the events flag (under
    its share lock) into ``record_events``: one round trip. A body can save it by doing both in its own
    first statement (``WITH mark AS (INSERT INTO motia_commits ...)`` and the flag row ``FOR SHARE``:
    :func:`~motia.state.backends.postgres.keyvalue._load` does) and setting ``started``. A body that writes
    state keys must have started before it writes; ``_transact`` starts any body that did not before its
    ``COMMIT``."""

    __slots__ = (
        "conn",
        "now",
        "record_events",
        "read_flag",
        "second",
        "token",
        "started",
        "notify",
        "streamed",
        "trace",
    )

    def __init__(self, conn: Any, now: float, events_on: bool, read_flag: bool) -> None:
        self.conn = conn
        self.now = now
        #: Whether writes record change events (valid once started).
        self.record_events = events_on
        #: Whether starting must read the events flag (it is not known to be on yet, and events matter).
        self.read_flag = read_flag
        #: The commit token, ``(second, token)``: the attempt's whole-second time and 63 random bits.
        self.second = int(time.time())
        self.token = secrets.randbits(63)
        self.started = False
        #: Set by a body that recorded events or added deliveries: listeners are called after the commit.
        self.notify = False
        #: Set by a body that recorded a stream change: stream listeners are called after the commit.
        self.streamed = False
        #: The caller's ``traceparent`` (made in the caller's task): the state events it records carry it.
        self.trace = current_trace.get()

    async def start(self) -> None:
        """Record the commit token and, if needed, read the events flag (under its share lock)."""
        if self.started:
            return
        flag = await self.conn.fetchval(_START_READ_FLAG if self.read_flag else _START, self.second, self.token)
        if self.read_flag:
            self.record_events = flag == "1"
        self.started = True


class _LoopPool:
    """One event loop's pool, made on first use and closed when the loop shuts down."""

    __slots__ = ("pool", "ready", "watch", "closed")

    def __init__(self) -> None:
        self.pool: Any = None
        self.ready: asyncio.Future[Any] | None = None
        self.watch: AsyncGenerator[None, None] | None = None
        self.closed = False


class _Retry(Exception):
    """Raised inside an attempt to run the whole transaction again (the cause says why)."""


def _start(generator: AsyncGenerator[None, None]) -> None:
    """Run an async generator to its first ``yield`` now: the running loop then closes it at shutdown."""
    try:
        generator.asend(None).send(None)
    except StopIteration:
        return
    raise RuntimeError("the generator awaited before its first yield")  # pragma: no cover


class PostgresConnections:
    """The connection layer of :class:`~motia.state.backends.postgres.PostgresBackend` (its base)."""

    url: str
    timeout: float
    schema: str
    _clock: Callable[[], float]
    #: Whether writes record change events; once seen on it stays on (the flag never goes off).
    _events_enabled: bool

    def _init_connections(self, settings: PostgresSettings) -> None:
        self._asyncpg = import_asyncpg()
        self._settings = settings
        self.url = settings.url
        self.timeout = settings.timeout
        self.schema = settings.schema
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._tokens_swept = 0.0
        self._lock = threading.Lock()
        self._closed = False

    # -- connecting ---------------------------------------------------------------------------------------

    def _connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            "server_settings": {"search_path": f'"{self.schema}"', "application_name": "motia"},
            "timeout": min(self.timeout, 10.0),
            # Statements are prepared once per connection and reused: every write runs the same few.
            "statement_cache_size": 256,
        }
        if self._settings.sslmode is not None:
            options["ssl"] = self._settings.sslmode
        return options

    async def _connect(self) -> Any:
        """A connection outside any pool (schema set-up at open, the commit-status check)."""
        return await self._asyncpg.connect(self._settings.dsn, **self._connect_options())

    def _check_open(self) -> None:
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")

    async def _pool(self) -> Any:
        """This event loop's pool (asyncpg connections belong to the loop that made them)."""
        loop = asyncio.get_running_loop()
        entry = self._pools.get(loop)
        if entry is None:
            with self._lock:
                self._check_open()
                entry = self._pools.get(loop)
                if entry is None:
                    for closed in [other for other in self._pools if other.is_closed()]:
                        del self._pools[closed]  # a loop closed without shutting down its generators
                    entry = self._pools[loop] = _LoopPool()
                    entry.watch = self._watch(loop, entry)
                    _start(entry.watch)
        if entry.pool is not None:
            return entry.pool
        if entry.ready is None:
            pool = self._asyncpg.create_pool(
                self._settings.dsn, min_size=0, max_size=POOL_SIZE, reset=_keep, **self._connect_options()
            )
            entry.ready = asyncio.ensure_future(_initialise(pool))
            entry.ready.add_done_callback(lambda done: _pool_made(entry, pool, done))
        pool = await asyncio.shield(entry.ready)
        entry.pool = pool  # (the future may be done before its callbacks ran: take its result, not the entry's)
        return pool

    async def _watch(self, loop: asyncio.AbstractEventLoop, entry: _LoopPool) -> AsyncGenerator[None, None]:
        """Lives as long as ``loop``: when the loop shuts down it closes the loop's pool, so short-lived loops
        (``asyncio.run`` per call) leave no connection open."""
        try:
            yield
        finally:
            with self._lock:
                if self._pools.get(loop) is entry:
                    del self._pools[loop]
            await self._close_pool(entry)

    async def _close_pool(self, entry: _LoopPool) -> None:
        if entry.closed:
            return
        entry.closed = True
        if entry.pool is None:
            return
        try:
            async with asyncio.timeout(self.timeout):
                await entry.pool.close()
        except (TimeoutError, OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError) as exc:
            logger.warning("PostgreSQL at %s: closing a pool failed (%s); terminating it", self.url, exc)
            entry.pool.terminate()

    async def _close_pools(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, {}
        current = asyncio.get_running_loop()
        for loop, entry in pools.items():
            if entry.watch is None:
                continue
            if loop is current:
                await entry.watch.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(entry.watch.aclose(), loop)
                await asyncio.wrap_future(future)
            elif entry.pool is not None:
                entry.pool.terminate()  # its loop has stopped: close the sockets without it

    # -- errors -------------------------------------------------------------------------------------------

    def _connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection (or the server) went away: the call may be retried."""
        pg = self._asyncpg
        if isinstance(exc, pg.InvalidPasswordError | pg.InvalidAuthorizationSpecificationError):
            return False
        if isinstance(exc, OSError | pg.PostgresConnectionError | pg.CannotConnectNowError):
            return True
        if isinstance(exc, pg.AdminShutdownError | pg.CrashShutdownError | pg.TooManyConnectionsError):
            return True
        if isinstance(exc, pg.InternalClientError):
            return True  # the connection's protocol state broke (seen when the server went away mid-call)
        return isinstance(exc, pg.InterfaceError) and "closed" in str(exc)

    def _translate(self, exc: BaseException, doing: str) -> StateError:
        if self._closed:
            # aclose() closed the pool under this call ("pool is closing"): the store is closed, as for a
            # call made after aclose(), not failing.
            return StateClosedError(f"{doing}: the state store {self.url} is closed")
        pg = self._asyncpg
        if isinstance(exc, pg.InvalidPasswordError | pg.InvalidAuthorizationSpecificationError):
            return StateBackendUnavailable(f"{doing}: PostgreSQL at {self.url} refused the credentials: {exc}")
        if isinstance(exc, pg.InvalidCatalogNameError):
            return StateBackendUnavailable(f"{doing}: PostgreSQL at {self.url}: {exc}")
        if isinstance(exc, pg.InsufficientPrivilegeError):
            return StateBackendUnavailable(
                f"{doing}: PostgreSQL at {self.url} denied a permission the store needs (schema {self.schema!r}): {exc}"
            )
        if self._connection_lost(exc):
            return StateBackendUnavailable(f"{doing}: PostgreSQL at {self.url} is unreachable: {exc}")
        return StateBackendError(f"{doing}: PostgreSQL at {self.url} failed: {exc}")

    def _discard(self, conn: Any) -> None:
        """Terminate a connection whose protocol state is unknown, so the pool never hands it out again."""
        try:
            conn.terminate()
        except self._asyncpg.InterfaceError:
            pass  # asyncpg released it already (it saw the connection die): the pool drops it itself

    def _healthy_after(self, exc: BaseException) -> bool:
        """Whether a connection on which ``exc`` was raised is still in step with its server: after one of
        our errors or an error the server reported, yes; after a lost connection, a cancellation (a
        deadline) or a client-side protocol error, no (it is terminated rather than pooled again)."""
        if isinstance(exc, StateError):
            return True
        return isinstance(exc, self._asyncpg.PostgresError) and not self._connection_lost(exc)

    def _retry_now(self, exc: BaseException) -> bool:
        """Errors after which the transaction was rolled back and may simply run again."""
        pg = self._asyncpg
        return isinstance(exc, _Retry | pg.TransactionRollbackError | pg.UniqueViolationError)

    # -- transactions and reads ---------------------------------------------------------------------------

    async def _before_commit(self, tx: Tx) -> None:
        """Runs inside every transaction whose body set ``tx.notify``, just before ``COMMIT`` (a hook for
        ``NOTIFY``: other instances learn of new events and deliveries with the commit)."""

    async def _transact(
        self, body: Callable[..., Awaitable[T]], *args: Any, what: str = "write", events: bool = True
    ) -> T:
        """Run ``await body(tx, *args)`` in one transaction; see the module docstring for the guarantees.

        ``events=False`` skips reading the events flag (``tx.record_events`` is then ``False``): for writes
        that never change state keys."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = RETRY_PAUSE
        warned = False
        error: BaseException | None = None
        while True:
            self._check_open()
            tx: Tx | None = None
            committing = False
            result: Any = None
            try:
                async with asyncio.timeout_at(deadline):
                    pool = await self._pool()
                    async with pool.acquire() as conn:
                        try:
                            transaction = conn.transaction()
                            await transaction.start()
                            try:
                                on = self._events_enabled
                                tx = Tx(conn, self._clock(), events and on, events and not on)
                                result = await body(tx, *args)
                                await tx.start()
                                if tx.record_events:
                                    self._events_enabled = True  # it never goes off again
                                if tx.notify:
                                    await self._before_commit(tx)
                            except BaseException as exc:
                                if self._healthy_after(exc):
                                    await self._rollback(transaction)
                                raise
                            committing = True
                            await transaction.commit()
                            await self._sweep_tokens(conn)
                        except BaseException as exc:
                            if not self._healthy_after(exc):
                                self._discard(conn)
                            raise
            except StateError:
                raise
            except TimeoutError as exc:
                if loop.time() < deadline:  # a connect timeout, not our deadline: the server is slow or away
                    error = exc
                else:
                    if committing:
                        raise StateTimeout(
                            f"{what}: PostgreSQL at {self.url} did not confirm the commit within {self.timeout:g} s; "
                            "the write may or may not have been applied"
                        ) from None
                    if error is not None:  # the deadline passed while retrying: say why it was retried
                        raise self._translate(error, what) from error
                    raise StateTimeout(
                        f"{what}: PostgreSQL at {self.url} did not answer within {self.timeout:g} s"
                    ) from None
            except Exception as exc:
                if self._retry_now(exc):
                    if loop.time() >= deadline:  # never spin past the deadline, whatever keeps recurring
                        raise self._translate(exc, what) from exc
                    continue
                if not self._connection_lost(exc):
                    raise self._translate(exc, what) from exc
                error = exc
            else:
                self._after_commit(tx)
                return result  # type: ignore[no-any-return]
            if committing and tx is not None:
                if await self._committed(tx, deadline, what):
                    self._after_commit(tx)
                    return result  # type: ignore[no-any-return]
            now = loop.time()
            if not warned:
                warned = True
                logger.warning("PostgreSQL at %s: %s; retrying for up to %.3g s", self.url, error, deadline - now)
            if now >= deadline:
                raise self._translate(error, what) from error
            await asyncio.sleep(min(pause, max(deadline - now, 0.0)))
            pause = min(pause * 2, RETRY_PAUSE_MAX)

    async def _sweep_tokens(self, conn: Any) -> None:
        """About once a minute per process, after a commit, delete the commit tokens past their keeping time
        (on the same connection, in a statement of its own: the write is already acknowledged-safe)."""
        now = time.monotonic()
        if now - self._tokens_swept < COMMIT_TOKENS_SWEEP:
            return
        self._tokens_swept = now
        try:
            await conn.execute("DELETE FROM motia_commits WHERE second < $1", int(time.time() - COMMIT_TOKENS_KEPT))
        except self._asyncpg.PostgresError as exc:  # the write committed; the next sweep tries again
            logger.warning("PostgreSQL at %s: deleting old commit tokens failed: %s", self.url, exc)

    def _after_commit(self, tx: Tx | None) -> None:
        if tx is None:
            return
        if tx.notify:
            self._notify_listeners()  # type: ignore[attr-defined]
        if tx.streamed:
            self._after_stream_commit()

    def _after_stream_commit(self) -> None:
        """Runs after each commit whose body set ``tx.streamed`` (the stream part wakes its tails here)."""

    async def _rollback(self, transaction: Any) -> None:
        """Roll back after a failed body; a connection already gone has rolled back by itself."""
        try:
            await transaction.rollback()
        except (OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError) as exc:
            logger.debug("PostgreSQL at %s: rollback failed (%s); the connection is dropped", self.url, exc)

    async def _committed(self, tx: Tx, deadline: float, what: str) -> bool:
        """Whether the attempt ``tx``, whose ``COMMIT`` lost its connection, committed: its token is probed
        on a new connection until the server answers (waiting while the attempt is still in progress),
        within the deadline."""
        loop = asyncio.get_running_loop()
        pause = RETRY_PAUSE
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect()
                    try:
                        async with conn.transaction():
                            inserted = await conn.fetchval(_PROBE, tx.second, tx.token)
                            raise _ProbeDone(inserted is None)  # rolls the probe's insert back
                    finally:
                        await conn.close()
            except _ProbeDone as done:
                return done.committed
            except TimeoutError:
                pass
            except Exception as exc:
                if not self._connection_lost(exc):
                    raise self._translate(exc, f"{what} (checking whether it committed)") from exc
            if loop.time() >= deadline:
                raise StateTimeout(
                    f"{what}: PostgreSQL at {self.url} did not confirm the commit within {self.timeout:g} s; "
                    "the write may or may not have been applied"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_PAUSE_MAX)

    async def _fetch(self, sql: str, *args: Any, what: str = "read") -> list[Any]:
        """Rows of one read statement, retried on a lost connection until ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = RETRY_PAUSE
        error: BaseException | None = None
        while True:
            self._check_open()
            try:
                async with asyncio.timeout_at(deadline):
                    pool = await self._pool()
                    rows: list[Any] = await pool.fetch(sql, *args)
                    return rows
            except StateError:
                raise
            except TimeoutError as exc:
                if loop.time() >= deadline:
                    if error is not None:
                        raise self._translate(error, what) from error
                    raise StateTimeout(
                        f"{what}: PostgreSQL at {self.url} did not answer within {self.timeout:g} s"
                    ) from None
                error = exc
            except UnicodeEncodeError as exc:
                raise StateValueError(f"{what}: {exc}") from None
            except Exception as exc:
                if not self._connection_lost(exc):
                    raise self._translate(exc, what) from exc
                error = exc
            now = loop.time()
            if now >= deadline:
                raise self._translate(error, what) from error
            await asyncio.sleep(min(pause, deadline - now))
            pause = min(pause * 2, RETRY_PAUSE_MAX)

    # -- opening ------------------------------------------------------------------------------------------

    def _open_blocking(self, prepare: Callable[[Any], Awaitable[None]]) -> None:
        """Fail closed at start-up: connect once and ``await prepare(connection)`` (the schema), now, from a
        constructor that may run inside an event loop or outside any: on a thread of its own with its own
        loop. Connection trouble is retried until ``timeout`` (a server still starting); a wrong password
        or a missing permission is an error at once."""
        outcome: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._open_async(prepare))
            except BaseException as exc:  # noqa: BLE001 - handed to the constructor's thread, raised there
                outcome.append(exc)

        thread = threading.Thread(target=run, name="motia-postgres-open", daemon=True)
        thread.start()
        thread.join()
        if outcome:
            raise outcome[0]

    async def _open_async(self, prepare: Callable[[Any], Awaitable[None]]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        pause = RETRY_PAUSE
        doing = "cannot open the state store"
        error: BaseException | None = None
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect()
                    try:
                        await prepare(conn)
                    finally:
                        await conn.close()
                return
            except StateError:
                raise
            except TimeoutError as exc:
                if loop.time() >= deadline:
                    if error is not None:
                        raise self._translate(error, doing) from error
                    raise StateBackendUnavailable(
                        f"{doing}: PostgreSQL at {self.url} did not answer within {self.timeout:g} s"
                    ) from None
                error = exc
            except Exception as exc:
                if not self._connection_lost(exc):
                    raise self._translate(exc, doing) from exc
                error = exc
            now = loop.time()
            if now >= deadline:
                raise self._translate(error, doing) from error
            await asyncio.sleep(min(pause, deadline - now))
            pause = min(pause * 2, RETRY_PAUSE_MAX)


#: The commit token's insert, fused into a transaction's first statement.
COMMIT_MARK = "mark AS (INSERT INTO motia_commits (second, token) VALUES ($1, $2))"
#: The events flag under a share lock: ``enable_events`` updates that row, so it waits for the writes that
#: read it off, and every write after it reads it on.
EVENTS_FLAG = "(SELECT value FROM motia_meta WHERE name = 'events' FOR SHARE)"
_START = f"WITH {COMMIT_MARK} SELECT NULL"
_START_READ_FLAG = f"WITH {COMMIT_MARK} SELECT {EVENTS_FLAG}"
#: Inserts the token unless an attempt committed it (then returns no row); waits while one is in progress.
_PROBE = "INSERT INTO motia_commits (second, token) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1"
#: Seconds a commit token is kept: longer than any call's deadline (``timeout`` is at most half of it).
COMMIT_TOKENS_KEPT = 2 * MAX_TIMEOUT
#: Seconds between a process's deletions of old tokens.
COMMIT_TOKENS_SWEEP = 60.0


class _ProbeDone(Exception):
    """Ends a probe's transaction (rolling its insert back) with the answer."""

    def __init__(self, committed: bool) -> None:
        super().__init__("probe done")
        self.committed = committed


def _pool_made(entry: _LoopPool, pool: Any, done: asyncio.Future[Any]) -> None:
    if done.cancelled() or done.exception() is not None:
        entry.ready = None  # the next call tries again
        if not done.cancelled():
            done.exception()
        return
    entry.pool = pool


async def _keep(conn: Any) -> None:
    """A released connection needs no reset (asyncpg's default costs a round trip per transaction): every
    transaction ended with COMMIT or ROLLBACK, nothing else is left in the session, and a connection that
    broke mid-call is terminated, not released."""


async def _initialise(pool: Any) -> Any:
    return await pool  # an asyncpg pool is made ready by awaiting it
