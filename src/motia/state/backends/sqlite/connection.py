"""Connections to the SQLite file: one per thread, never shared with a forked child; WAL checkpoints;
driver errors translated at this boundary.

* WAL checkpoints (which do fsync) are taken off the loop thread, and in two steps so that writers
  are not stalled while one copies the WAL: a PASSIVE checkpoint (writers go on), then a RESTART of
  the few frames written meanwhile, which restarts the WAL so that it stays bounded under a steady write
  load. The loop thread's connection has automatic checkpoints disabled.
* Point reads and small pages read on the loop thread (WAL readers never wait for writers; a thread
  hop would cost ten times the read). Whole-scope reads run on a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motia.exceptions import (
    StateBackendError,
    StateBackendUnavailable,
    StateClosedError,
    StateError,
    StateTimeout,
    StateValueError,
)
from motia.state.backends.base import StateBackend
from motia.state.backends.sqlite.schema import create_schema

if TYPE_CHECKING:
    from motia.state.backends.sqlite.writer import _LoopWriter

logger = logging.getLogger("motia.state")

#: Checkpoint the WAL from a worker thread after this many rows written (each is at least one WAL
#: frame, so this matches SQLite's own default of a checkpoint per 1,000 pages).
CHECKPOINT_WRITES = 1000
#: Prepared statements kept per connection (sqlite3's LRU cache). Group commits write by multi-row statements of
#: a power of two rows each (``plain.py``, ``outbox.py``: up to ~40 forms), beside every other statement the
#: backend runs; a form evicted by a smaller cache is prepared again at its next use (~200 µs for a 128-row
#: upsert, more than its multi-row form saves), which an app running state, queues and streams on one connection
#: could pay batch after batch.
STATEMENT_CACHE = 256
_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
#: Opening retries a busy set-up step after this pause (seconds), doubling up to the maximum.
OPEN_RETRY_PAUSE = 0.002
OPEN_RETRY_PAUSE_MAX = 0.1


SQLITE_READONLY = 8

#: ``PRAGMA secure_delete`` of every connection. Debian's SQLite (and others) is built with it ``ON``: every
#: deleted row's bytes are zeroed, and every page freed whole is written again, zeroed, to the WAL. The
#: delivery table deletes each delivery it completes (a row and three index entries), so that cost a tenth
#: of a completion's WAL frames and 2 % of its and the claim's SQLite instructions (issue 15, see
#: ``bench/delivery_sql.py``). ``FAST`` is close to SQLite's own default (``OFF``): a deleted row is still
#: zeroed where that costs no extra write; a page freed whole keeps its bytes until it is reused.
SECURE_DELETE = "FAST"

#: A row of ``motia_state`` as SQLite hands it over: ``(value, version, expires_at)``.
Row = tuple[bytes, int, "float | None"]


#: What a hot write binds a value as: a ``bytearray`` (a copy), not the ``bytes`` it has. Python 3.11's sqlite3
#: binds ``int``, ``float``, ``str`` and ``bytearray`` at once, but first sends any other parameter, ``bytes``
#: and ``None`` included, through its adapter protocol, whose failed look-ups each build and discard an
#: ``AttributeError``: about 3,000 instructions per ``bytes`` parameter, against a few hundred for the copy
#: (issue 15; for the same reason the hot writes put ``NULL`` in their SQL rather than bind ``None``). SQLite
#: stores either as the same BLOB.
blob = bytearray


class RowHook:
    """Lets one write statement hand the row it replaces to Python, under the statement's own write lock.

    A lone write needs the old row (``set`` returns the old value, ``update`` computes the new one from
    it). Reading it first is a statement of its own; instead the upsert calls these as SQL functions
    (``motia_old``, ``motia_plan``) in its ``DO UPDATE SET``, where SQLite passes the old column values,
    so a write is one statement (issue 15; see :mod:`motia.state.backends.sqlite.keyvalue`). Each
    connection has its own hook and is used by one thread at a time, so nothing here is shared.
    """

    __slots__ = ("row", "plan", "recording", "rows", "planner")

    def __init__(self) -> None:
        #: The row the last statement replaced (``None``: it replaced none); the caller resets it.
        self.row: Row | None = None
        #: ``motia_plan``'s work: the new value from the old row (it may raise: the statement then aborts).
        self.plan: Any = None
        #: Whether this connection has the views of the writes that record events
        #: (:mod:`~motia.state.backends.sqlite.recorded`).
        self.recording = False
        #: ``motia_olds``' rows, by key (a batch of sets of one scope, see :mod:`~motia.state.backends.sqlite.plain`);
        #: the caller sets and clears it.
        self.rows: dict[str, Row] | None = None
        #: ``motia_plans``' work: the new value of one of the rows of a multi-row upsert, from its key and old row
        #: (a batch of updates, see :mod:`~motia.state.backends.sqlite.plain`); the caller sets and clears it.
        self.planner: Any = None

    def old(self, value: bytes, version: int, expires_at: float | None) -> None:
        """``motia_old``: keep the row; answer NULL, so the statement's ``coalesce(motia_old(...), new)``
        takes the new value in SQLite, never converted to Python and back."""
        self.row = (value, version, expires_at)

    def olds(self, key: str, value: bytes, version: int, expires_at: float | None) -> None:
        """``motia_olds``: as :meth:`old`, for one of the rows of a multi-row upsert (of one scope, whose keys
        differ), kept by its key."""
        self.rows[key] = (value, version, expires_at)  # type: ignore[index]

    def plans(self, key: str, value: bytes, version: int, expires_at: float | None) -> bytes:
        """``motia_plans``: the new value of the row of ``key`` in a multi-row upsert, by :attr:`planner`."""
        data: bytes = self.planner(key, value, version, expires_at)
        return data

    def __call__(self, value: bytes, version: int, expires_at: float | None) -> bytes:
        row = self.row = (value, version, expires_at)
        data: bytes = self.plan(row)
        return data


class HookedConnection(sqlite3.Connection):
    """A connection with its :class:`RowHook` registered as the SQL functions ``motia_old`` and ``motia_plan``."""

    hook: RowHook
    #: A cursor kept for the lone writes' statements: ``connection.execute`` makes (and frees) a cursor per call,
    #: about 1,500 instructions of a write's ~70,000 (issue 15). Used by the connection's one thread at a time.
    writes: sqlite3.Cursor


def _error_code(exc: sqlite3.Error) -> int | None:
    """The primary result code of ``exc`` (extended codes such as SQLITE_BUSY_RECOVERY folded into theirs)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def _is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock."""
    return _error_code(exc) in _BUSY_CODES or "locked" in str(exc)


class _Busy(Exception):
    """The write lock is held elsewhere; retry on a thread that may wait."""


#: Bumped in a child process after fork: connections opened before it must not be used there.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)


class SQLiteConnections(StateBackend):
    """The connections of :class:`~motia.state.backends.sqlite.SQLiteBackend` (its base): one per thread
    (the loop thread's never waits for a lock), reopened after a fork, checkpoints, reads, error translation."""

    path: Path
    timeout: float
    _synchronous: str
    _forks: int
    _local: threading.local
    _connections: dict[sqlite3.Connection, threading.Thread]
    _lock: threading.Lock
    _drain: threading.Condition
    _writers: dict[asyncio.AbstractEventLoop, _LoopWriter]
    #: One entry per write in flight (called, not yet answered), on every loop: a list, not a count under
    #: :attr:`_lock`, because appending and deleting are each one step under the GIL, and taking the lock twice
    #: per write cost ~2,000 instructions of ~70,000 (issue 15). :meth:`aclose` sets ``_closed``, then waits for it
    #: to empty; a write appends first and reads ``_closed`` after, so it is either waited for or refused.
    _in_flight: list[None]
    _closed: bool
    _writes_since_checkpoint: int
    _checkpointing: bool
    #: Held by a checkpoint while it blocks writers (its RESTART step); writes on worker threads wait on it.
    _checkpoint_gate: threading.Lock
    _executor: ThreadPoolExecutor

    # -- connections ------------------------------------------------------------------------------

    def _open(self) -> None:
        """Create the file and schema, or fail with the absolute path: never a silent empty store."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateBackendUnavailable(
                f"cannot create the directory for the state file {self.path}: {exc}"
            ) from None
        if self.path.is_dir():
            raise StateBackendUnavailable(f"the state path {self.path} is a directory, not a SQLite file")
        connection = self._connection(inline=False)
        deadline = time.monotonic() + self.timeout
        pause = OPEN_RETRY_PAUSE
        while True:
            try:
                create_schema(connection, self.path, self._rollback)
                return
            except sqlite3.Error as exc:
                self._rollback(connection)
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._translate(exc, opening=True) from exc
            # Busy without the busy handler being asked to wait (SQLite does that where waiting could
            # deadlock): another process is creating or upgrading the file. Try again shortly.
            time.sleep(pause)
            pause = min(pause * 2, OPEN_RETRY_PAUSE_MAX)

    def _connection(self, *, inline: bool) -> HookedConnection:
        if self._forks != _forks[0]:  # forked: never share a connection with the parent
            self._after_fork()
        attribute = "inline" if inline else "blocking"
        connection: HookedConnection | None = getattr(self._local, attribute, None)
        if connection is not None:
            return connection
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")
        connection = self._connect(inline)
        setattr(self._local, attribute, connection)
        with self._lock:
            ended = [(known, thread) for known, thread in self._connections.items() if not thread.is_alive()]
            for known, _ in ended:
                del self._connections[known]
            self._connections[connection] = threading.current_thread()
        for known, thread in ended:
            # Its thread has ended (a script's short-lived thread, say), so nothing uses it any more: without
            # this, every thread that ever used the store would keep a connection (a file descriptor) open.
            logger.debug("closing the connection of ended thread %s to %s", thread.name, self.path)
            known.close()
        return connection

    def _connect(self, inline: bool) -> HookedConnection:
        """Open and set up a connection, waiting out other processes that are creating or writing the file.

        Some set-up steps meet a lock the busy timeout does not cover: SQLite answers "database is
        locked" at once, without waiting, to a switch to WAL while another process creates the file, or
        while it recovers the WAL. Those are retried until ``timeout``. An inline connection (made on
        the event loop thread, which must not wait) raises :class:`_Busy` instead: its caller moves the
        work to a worker thread, which waits.
        """
        deadline = time.monotonic() + self.timeout
        pause = OPEN_RETRY_PAUSE
        while True:
            connection = sqlite3.connect(
                self.path,
                timeout=0 if inline else self.timeout,
                isolation_level=None,
                check_same_thread=False,
                cached_statements=STATEMENT_CACHE,
                factory=HookedConnection,
            )
            try:
                self._set_up(connection, inline)
                return connection
            except sqlite3.Error as exc:
                connection.close()
                if not _is_busy(exc):
                    raise self._translate(exc, opening=True) from exc
                if inline:
                    raise _Busy from None
                if time.monotonic() >= deadline:
                    raise self._translate(exc, opening=True) from exc
            except BaseException:
                connection.close()
                raise
            time.sleep(pause)
            pause = min(pause * 2, OPEN_RETRY_PAUSE_MAX)

    def _set_up(self, connection: HookedConnection, inline: bool) -> None:
        connection.hook = hook = RowHook()
        connection.create_function("motia_old", 3, hook.old)
        connection.create_function("motia_plan", 3, hook)
        connection.create_function("motia_olds", 4, hook.olds)
        connection.create_function("motia_plans", 4, hook.plans)
        connection.writes = connection.cursor()
        # The mode is read first (it reads the header, so a corrupt file fails here, before any write),
        # and switched only when needed: switching takes a lock, which a store in use should not need.
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if mode.lower() != "wal":
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StateBackendUnavailable(f"cannot switch the state file {self.path} to WAL mode (got {mode!r})")
        connection.execute(f"PRAGMA synchronous={self._synchronous}")
        connection.execute("PRAGMA cache_size=-16000")
        connection.execute(f"PRAGMA secure_delete={SECURE_DELETE}")
        if inline:
            connection.execute("PRAGMA wal_autocheckpoint=0")

    def _after_fork(self) -> None:
        self._forks = _forks[0]
        self._local = threading.local()
        self._connections = {}
        self._lock = threading.Lock()
        self._drain = threading.Condition(self._lock)
        self._checkpoint_gate = threading.Lock()
        self._writers = {}
        self._in_flight = []
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="motia-sqlite")

    def _translate(self, exc: sqlite3.Error | UnicodeEncodeError, *, opening: bool = False) -> StateError:
        if isinstance(exc, UnicodeEncodeError):  # sqlite3 binds str as UTF-8: a lone surrogate cannot be
            return StateValueError(f"a text argument contains a lone surrogate and is not valid UTF-8 ({exc})")
        message = str(exc)
        if _is_busy(exc):
            return StateTimeout(
                f"the state file {self.path} stayed locked for more than {self.timeout:g} s ({message})"
            )
        if opening or isinstance(exc, sqlite3.DatabaseError) and "not a database" in message:
            return StateBackendUnavailable(f"cannot open the state file {self.path}: {message}")
        return StateBackendError(f"state file {self.path}: {message}")

    def _rollback(self, connection: sqlite3.Connection) -> None:
        """End a failed transaction without hiding why it failed.

        After some errors (disk full, I/O error) SQLite has already rolled the transaction back: a
        ``ROLLBACK`` then raises "no transaction is active", which would replace the real error. If the
        rollback itself fails, the connection is closed (which rolls back and releases the write lock)
        and the next use opens a new one.
        """
        if not connection.in_transaction:
            return
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            logger.warning("could not roll back on %s; reopening the connection", self.path, exc_info=True)
            self._discard(connection)

    def _discard(self, connection: sqlite3.Connection) -> None:
        """Close one of this thread's connections and forget it (the next use opens a new one)."""
        for attribute in ("inline", "blocking"):
            if getattr(self._local, attribute, None) is connection:
                delattr(self._local, attribute)
        with self._lock:
            self._connections.pop(connection, None)
            for writer in self._writers.values():  # a loop's writer may keep it for its inline writes
                if writer.connection is connection:
                    writer.connection = None
        connection.close()

    def _after_commit(self, writes: int) -> None:
        """Count what was written and start a checkpoint on a worker thread when the WAL is due one."""
        self._writes_since_checkpoint += writes
        if self._closed:  # closing: the executor is (being) shut down; the next open checkpoints
            return
        if self._writes_since_checkpoint >= CHECKPOINT_WRITES and not self._checkpointing:
            self._checkpointing = True
            self._writes_since_checkpoint = 0
            self._executor.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and restart it, on a worker thread, without stalling writers.

        PASSIVE alone is not enough: racing a steady writer it never backfills every frame, so the WAL
        never restarts and grows without bound (seen: 268 MB after 60,000 writes). RESTART alone holds
        the write lock for the whole copy, and waits for it in SQLite's busy handler (sleeping 1, 2,
        5 ... ms while a writer keeps taking it): every writer stalls meanwhile (10-18 % of write
        throughput under a steady load). Nor TRUNCATE: regrowing the file made each later commit 10-25 %
        slower. So, in steps:

        1. PASSIVE copies the frames there are; writers go on.
        2. Under :attr:`_checkpoint_gate` this process's writers pause (the loop thread stops committing
           inline; worker threads wait on the gate), and a second PASSIVE copies the few frames written
           during step 1. With every frame copied, the next write starts the WAL over.
        3. Only if that did not copy everything (another process wrote meanwhile, or a reader was in the
           way) RESTART, still under the gate, waits for them and does.
        """
        try:
            connection = self._connection(inline=False)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self._checkpoint_gate:
                busy, log, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if busy or copied < log:
                    connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except (sqlite3.Error, StateError) as exc:
            # Harmless: a long reader kept it from finishing; it is tried again after more writes.
            logger.warning("WAL checkpoint of %s did not complete: %s", self.path, exc)
        finally:
            self._checkpointing = False

    # -- reads ------------------------------------------------------------------------------------

    def _query(self, inline: bool, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
        if self._closed:
            raise StateClosedError(f"the state store {self.url} is closed")
        try:
            return self._connection(inline=inline).execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as exc:
            if inline and _is_busy(exc):
                raise _Busy from None
            raise self._translate(exc) from exc
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise self._translate(exc) from exc

    async def _read(self, sql: str, parameters: tuple[Any, ...], *, inline: bool) -> list[Any]:
        if inline:
            try:
                return self._query(True, sql, parameters)
            except _Busy:
                pass  # rare in WAL (recovery after a crash): wait for it on a worker thread
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._query, False, sql, parameters)
        except RuntimeError:
            if self._closed:  # the executor was shut down by aclose()
                raise StateClosedError(f"the state store {self.url} is closed") from None
            raise

    def _close_connections(self) -> None:
        with self._lock:
            connections, self._connections = list(self._connections), {}
        for connection in connections:
            connection.close()
        self._local = threading.local()
