"""Group commit: the writes of one event loop queued, committed together, each caller answered after the commit.

* Writes are queued per event loop and *group committed*: everything queued during one loop iteration
  runs in one ``BEGIN IMMEDIATE`` … ``COMMIT``, and each caller is answered only after that commit. A
  call that raises fails alone and leaves nothing behind (an undo log for its buffered changes, a
  ``SAVEPOINT`` for the statements it ran); the rest of its batch commits.
* The commit runs on the loop thread itself when the write lock is free: the attempt uses
  ``busy_timeout=0``, so it never waits on another process, and with ``synchronous=NORMAL`` a WAL commit
  does not fsync. If the lock is taken, the batch moves to a worker thread, which waits with a deadline
  (``timeout``) and then raises :class:`StateTimeout`. With ``durability=full`` (fsync per commit) every
  commit runs on a worker thread.
* A write that no other could join commits *inline*, at once, without the round trip through the loop
  (a future, a callback, two loop iterations) that a queued write pays. Whether another could join is
  judged with public asyncio only, so that it works on uvloop (what ``motia run`` serves on) as on
  asyncio's loop (see :meth:`_LoopWriter.inline_turn`): one task writing one write after another commits
  inline; as soon as a second task writes in the same loop iteration, or the last batch grouped several
  writes, writes queue and are group committed again.
* A batch of one ``set``, ``update`` or ``delete`` while no process records events skips the transaction: it
  is one autocommit statement instead of five (``BEGIN IMMEDIATE``, the events flag, the row, the upsert,
  ``COMMIT``), which checks the events flag itself and hands the old row to Python from inside. What it
  cannot do alone falls back to a read and a compare-and-set, or to the transaction (see
  :data:`~motia.state.backends.sqlite.keyvalue._LONE_WRITES`). An inline write calls that form directly.
  While events are on, a lone ``set``, ``update`` or ``delete`` is one statement too, its outbox row
  written by a trigger (:mod:`~motia.state.backends.sqlite.recorded`).
* A batch of several ``set`` and ``update`` calls while events are off skips the transaction's per-call
  bookkeeping (its undo log, loads, events): it is planned from one read per scope and written by multi-row
  upserts, and a batch of sets without ``if_version`` without the read (see
  :mod:`~motia.state.backends.sqlite.plain`); anything else, or events found on, runs the usual way.

Why not one writer thread: handing each write to a thread and back costs more than the commit itself
(measured in ``bench/state_bench.py``), and throughput under concurrency comes from group commit, not
from threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from motia.exceptions import StateClosedError, StateTimeout
from motia.state.backends._waiters import CommitWaiters
from motia.state.backends.sqlite.connection import (
    SQLITE_READONLY,
    HookedConnection,
    SQLiteConnections,
    _Busy,
    _error_code,
    _forks,
    _is_busy,
)
from motia.state.backends.sqlite.delivery import (
    _events_flag,
    _write_claim,
    _write_complete_and_claim,
    _write_complete_many,
    _write_dispatch,
    _write_extend,
    _write_settle,
)
from motia.state.backends.sqlite.keyvalue import (
    _BUFFERED_WRITES,
    _KEYED_WRITES,
    _LONE_EVENT_WRITES,
    _LONE_WRITES,
    FALLBACK,
    _write_purge,
)
from motia.state.backends.sqlite.outbox import Subscribers
from motia.state.backends.sqlite.plain import PLAIN_WRITES, run_plain
from motia.state.backends.sqlite.plain import Failed as _Failure  # a call that raised; the rest of its batch commits
from motia.state.backends.sqlite.recorded_batch import recorded_sets
from motia.state.backends.sqlite.streams import TRIM_INTERVAL, _trim_backlog
from motia.state.backends.sqlite.transaction import _Transaction
from motia.state.observe import current_trace

logger = logging.getLogger("motia.state")

#: Writes committed together at most; bounds how long one flush holds the loop.
MAX_BATCH = 256
#: Expired keys swept per write batch, at most once per ``sweep_interval``.
SWEEP_BATCH = 256
#: Inline commits one task may make in a row before its next write queues (and so yields to the loop):
#: a task writing in a tight loop never suspends otherwise, and would keep every other task waiting.
INLINE_STREAK = 32

_NOBODY: Any = object()
#: The runtime's own calls on every delivery (move events, claim, settle, renew leases): they commit inline
#: whenever nothing is queued and no group was seen, without taking the loop round's turn from a task
#: writing one write after another (see :meth:`_LoopWriter.inline_turn`).
_RUNTIME_WRITES = frozenset(
    (_write_dispatch, _write_claim, _write_complete_and_claim, _write_complete_many, _write_extend, _write_settle)
)


class _Call:
    """One write to run inside a batch's transaction: ``function(transaction, *args)``. ``trace`` is its
    caller's ``traceparent``, read when the write is made (the batch may run in another task)."""

    __slots__ = ("function", "args", "trace")

    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.trace = current_trace.get()


class _Request(_Call):
    """A queued write: its caller awaits ``future``, answered after the batch commits. Made by
    :meth:`SQLiteWriter._write` field by field, without an ``__init__`` frame (every queued write makes one)."""

    __slots__ = ("future", "heavy")
    future: asyncio.Future[Any]
    heavy: bool


_new_request = object.__new__


async def _ready(outcome: Any) -> Any:
    """What :meth:`SQLiteWriter._write` hands back for a write it committed at once."""
    return outcome


class _LoopWriter:
    """Group commit for one event loop: queue writes, flush them together, answer after commit."""

    def __init__(self, backend: SQLiteWriter, loop: asyncio.AbstractEventLoop) -> None:
        self.backend = backend
        self.loop = loop
        self.pending: list[_Request] = []
        self.scheduled = False
        self.in_thread = False  # a batch is committing on a worker thread; keep commit order
        #: The last batch flushed grouped several writes (the runtime's own calls aside): writers are running
        #: concurrently, so queue.
        self.contended = False
        #: The task that committed inline since the loop last ran :meth:`_new_turn`, and how many times.
        self.turn_task: Any = _NOBODY
        self.turn_writes = 0
        #: The runtime's calls committed inline in this round (:data:`_RUNTIME_WRITES`).
        self.runtime_writes = 0
        #: A :meth:`_new_turn` is scheduled: the loop has not gone round since the first inline commit.
        self.round_open = False
        #: The loop thread's connection (the loop runs on one thread), kept here so an inline write need not
        #: look it up in the thread-local; forgotten when the connection is discarded.
        self.connection: HookedConnection | None = None

    def inline_turn(self, runtime: bool = False) -> bool:
        """Whether the current write may commit now, alone, on the loop thread: no other write could join it.

        asyncio's loop has a private queue of ready callbacks that would tell; uvloop has none, and
        ``motia run`` serves on uvloop. So it is judged from what the writer itself sees: nothing queued
        or committing on a thread (commit order), the last batch was not a group (no concurrent writers
        seen), and no *other* task has written since the loop last went round (the first write of a
        round commits inline and notes its task; a second task writing in the same round means writers
        are running side by side, so it queues and the batch gathers them). One task may commit
        :data:`INLINE_STREAK` times in a round; its next write queues, letting the loop run others. And
        none commits inline while a checkpoint finishes (it holds the gate for a moment, see
        :meth:`SQLiteConnections._checkpoint`).

        A ``runtime`` call (:data:`_RUNTIME_WRITES`: the dispatcher's and the delivery worker's, woken by the
        writes they serve) neither takes the turn nor is refused it: with nothing queued it could join no
        group, and counting it as a second writer sent about a fifth of a lone writer's sets through the
        queue whenever a state trigger ran beside it (issue 15). With writes queued or a group just seen, it
        queues and is group committed with them as before. At most :data:`INLINE_STREAK` of them commit
        inline in one round.
        """
        if self.pending or self.in_thread or self.contended or self.backend._checkpoint_gate.locked():
            return False
        if not self.round_open:
            self.round_open = True
            self.loop.call_soon(self._new_turn)
        if runtime:
            self.runtime_writes += 1
            return self.runtime_writes <= INLINE_STREAK
        task = asyncio.current_task(self.loop)
        if self.turn_task is _NOBODY:
            self.turn_task = task
            self.turn_writes = 1
            return True
        if self.turn_task is task and self.turn_writes < INLINE_STREAK:
            self.turn_writes += 1
            return True
        return False

    def _new_turn(self) -> None:
        self.turn_task = _NOBODY
        self.runtime_writes = 0
        self.round_open = False

    def flush(self) -> None:
        self.scheduled = False
        taken = self.pending[:MAX_BATCH]
        del self.pending[:MAX_BATCH]
        if self.pending:
            self.scheduled = True
            self.loop.call_soon(self.flush)
        # A caller cancelled before its commit started: skip it, so nothing unacknowledged is written.
        batch: list[_Request] = []
        heavy = False
        writers = 0  # callers other than the runtime's own calls (one loop over the batch for all three)
        for request in taken:
            if request.function not in _RUNTIME_WRITES:
                writers += 1
            if not request.future.cancelled():
                batch.append(request)
                heavy = heavy or request.heavy
        # The batch grouped writes of two or more callers other than the runtime (a lone writer's queued write
        # joined by the dispatcher's or the worker's shows no concurrent writers): writers are running side by side.
        self.contended = writers > 1
        if len(batch) < len(taken):
            self.backend._finished(len(taken) - len(batch))
        if not batch:
            return
        backend = self.backend
        if (
            backend._inline_writes
            and not backend._checkpoint_gate.locked()  # a checkpoint is finishing: wait on a thread
            and not heavy
        ):
            try:
                outcomes = backend._run_batch(backend._connection(inline=True), batch)
            except _Busy:
                pass
            except BaseException as exc:  # noqa: BLE001 - every caller must hear about it
                self._answer_all(batch, exc)
                return
            else:
                self._answer(batch, outcomes)
                backend._after_commit(len(batch))
                return
        self.in_thread = True
        self.scheduled = True  # hold further flushes until this batch is answered: commit order
        future = self.loop.run_in_executor(backend._executor, backend._run_batch_blocking, batch)
        future.add_done_callback(lambda done: self._thread_done(done, batch))

    def _thread_done(self, done: asyncio.Future[list[Any]], batch: list[_Request]) -> None:
        self.in_thread = False
        self.scheduled = False
        exc = done.exception()
        if exc is not None:
            self._answer_all(batch, exc)
        else:
            self._answer(batch, done.result())
            self.backend._after_commit(len(batch))
        if self.pending:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def _answer(self, batch: list[_Request], outcomes: list[Any]) -> None:
        for request, outcome in zip(batch, outcomes, strict=True):
            # A caller cancelled while its batch committed is not answered: its future refuses it, which costs
            # less, asked of the rare cancelled one, than a cancelled() check of every future (issue 15).
            try:
                if type(outcome) is _Failure:
                    request.future.set_exception(outcome.error)
                else:
                    request.future.set_result(outcome)
            except asyncio.InvalidStateError:
                pass
        self.backend._finished(len(batch))

    def _answer_all(self, batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.future.cancelled():
                request.future.set_exception(exc)
        self.backend._finished(len(batch))


class SQLiteWriter(SQLiteConnections):
    """The group-commit writer of :class:`~motia.state.backends.sqlite.SQLiteBackend` (its base): queues each
    write on its event loop's :class:`_LoopWriter` and runs batches in one transaction."""

    #: Whether writes record change events: a flag kept in the file, so every process agrees.
    _events_enabled: bool
    #: The registered state-trigger subscriptions, as of the number in the file (see ``outbox.py``).
    _subscribers: Subscribers
    _clock: Callable[[], float]
    _sweep_interval: float
    _last_sweep: float
    _inline_writes: bool
    #: Woken after each commit that recorded a stream change (tails waiting on any loop).
    _stream_waiters: CommitWaiters
    _last_stream_trim: float
    #: Where the next periodic trim of the stream log starts (see :func:`_trim_backlog`).
    _stream_trim_from: tuple[str, str]

    # -- writes -----------------------------------------------------------------------------------

    def _write(self, function: Callable[..., Any], *args: Any, heavy: bool = False) -> Awaitable[Any]:
        """Run ``function(transaction, *args)`` in a batch; hand back what its caller awaits for the outcome.

        A plain function, not a coroutine: a queued write hands back the future its caller awaits, without a
        frame of its own to create and to pass through when the future is answered (~0.9k instructions of a
        concurrent ``set``'s ~52k; issue 15). A write committed inline hands back :func:`_ready` (a done future
        costs more to make and to await than that coroutine), or raises here, at the call. Every caller awaits
        it at once, as it would a coroutine.
        """
        loop = asyncio.get_running_loop()
        self._in_flight.append(None)  # counted before the flag is read: aclose() sets it, then waits for the count
        if self._closed:
            self._finished(1)
            raise StateClosedError(f"the state store {self.url} is closed")
        writer = self._writers.get(loop)
        if writer is None:
            with self._lock:
                # closed loops never run again (asyncio.run() makes one per call): their writers go, bounding them
                for closed in [known for known in self._writers if known.is_closed()]:
                    del self._writers[closed]
                writer = self._writers[loop] = _LoopWriter(self, loop)
        # writes already queued: this one joins them (inline_turn's first test, without its call)
        if self._inline_writes and not heavy and not writer.pending and writer.inline_turn(function in _RUNTIME_WRITES):
            # No other write could join a batch: commit this one now, a batch of one, without a round
            # trip through the loop.
            lone = (_LONE_EVENT_WRITES if self._events_enabled else _LONE_WRITES).get(function)
            if lone is not None:  # the lone form at once (what _run_batch would try first for a batch of one)
                now = self._clock()
                # _nothing_due, spelled out on the hottest path: no TTL sweep or stream-log trim is due
                if now - self._last_sweep < self._sweep_interval and now - self._last_stream_trim < TRIM_INTERVAL:
                    try:
                        connection = writer.connection
                        if connection is None or self._forks != _forks[0]:
                            connection = writer.connection = self._connection(inline=True)
                        outcome = lone(self, connection, now, current_trace.get(), *args)
                    except (sqlite3.Error, UnicodeEncodeError, _Busy):
                        # the transaction below runs it and reports any error as usual (busy: on a thread)
                        outcome = FALLBACK
                    except BaseException:
                        self._finished(1)
                        raise
                    if outcome is not FALLBACK:
                        self._finished(1)
                        self._after_commit(1)
                        return _ready(outcome)
            try:
                outcome = self._run_batch(self._connection(inline=True), [_Call(function, args)], lone=False)
            except _Busy:
                pass  # another connection holds the lock: queue it for a thread that may wait
            except BaseException:
                self._finished(1)
                raise
            else:
                self._finished(1)
                if isinstance(outcome[0], _Failure):
                    raise outcome[0].error
                self._after_commit(1)
                return _ready(outcome[0])
        future: asyncio.Future[Any] = asyncio.Future()  # the running loop's: half create_future()'s cost on uvloop
        request: _Request = _new_request(_Request)
        request.function = function
        request.args = args
        request.trace = current_trace.get()
        request.future = future
        request.heavy = heavy
        writer.pending.append(request)  # queued; the first of a batch schedules its flush
        if not writer.scheduled and not writer.in_thread:
            writer.scheduled = True
            loop.call_soon(writer.flush)
        return future

    def _finished(self, count: int) -> None:
        del self._in_flight[:count]
        if self._closed and not self._in_flight:  # only aclose() waits for this
            with self._drain:
                self._drain.notify_all()

    def _nothing_due(self, now: float) -> bool:
        """No TTL sweep or stream-log trim is due (they run in a batch's transaction): a lone write may skip
        it, in its form for events on or off (``_LONE_EVENT_WRITES``, ``_LONE_WRITES``; while this process
        believes events off, the statement checks the flag itself)."""
        return now - self._last_sweep < self._sweep_interval and now - self._last_stream_trim < TRIM_INTERVAL

    def _run_batch(self, connection: sqlite3.Connection, batch: Sequence[_Call], *, lone: bool = True) -> list[Any]:
        """Run one batch in one transaction; raise :class:`_Busy` if the write lock is taken.

        A batch of one may skip the transaction (:data:`~motia.state.backends.sqlite.keyvalue._LONE_WRITES`),
        unless ``lone`` is false (the caller tried that already).

        Returns one outcome per call: its result, or a :class:`_Failure` for a call that raised (that call
        changed nothing; the others commit). An error outside the calls (``BEGIN``, the final flush,
        ``COMMIT``, or one after which SQLite rolled the whole transaction back) fails the whole batch.
        """
        now = self._clock()
        if lone and len(batch) == 1 and self._nothing_due(now):
            form = (_LONE_EVENT_WRITES if self._events_enabled else _LONE_WRITES).get(batch[0].function)
            if form is not None:
                outcome = self._run_lone(connection, form, now, batch[0])
                if outcome is not FALLBACK:
                    return [outcome]
        if len(batch) > 1 and self._nothing_due(now):  # a group without the transaction's per-call bookkeeping
            plain: list[Any] | None = None
            if self._events_enabled:
                plain = recorded_sets(self, connection, batch, now)  # sets while events are on (issue 15)
            else:
                for call in batch:  # a loop, not all() over a generator: one frame less per call of the batch
                    if call.function not in PLAIN_WRITES:
                        break
                else:
                    plain = self._run_plain(connection, batch, now)
            if plain is not None:
                return plain
        self._begin(connection)
        outcomes: list[Any] = []
        try:
            if not self._events_enabled:
                # Read under the write lock, in this transaction: a process that enabled events committed
                # before this BEGIN, so this batch sees it and records its events. Once on, the flag never
                # goes off, so the read is paid only while events are off.
                self._events_enabled = _events_flag(connection)
            tx = _Transaction(connection, now, self._events_enabled, self._subscribers)
            isolate = len(batch) > 1
            if isolate:
                by_scope: dict[str, list[str]] = {}
                for call in batch:
                    if call.function in _KEYED_WRITES:
                        by_scope.setdefault(call.args[0], []).append(call.args[1])
                for scope, keys in by_scope.items():
                    tx.prefetch(scope, keys)
            for call in batch:
                outcomes.append(self._run_call(tx, call, isolate))
            tx.trace = None  # what follows (the sweep's expiries) is no caller's
            if now - self._last_sweep >= self._sweep_interval:
                self._last_sweep = now
                _write_purge(tx, SWEEP_BATCH)
            if now - self._last_stream_trim >= TRIM_INTERVAL:
                self._last_stream_trim = now
                self._stream_trim_from = _trim_backlog(tx, self._stream_trim_from)
            tx.flush()
            connection.execute("COMMIT")
        except BaseException as exc:
            self._rollback(connection)
            if isinstance(exc, sqlite3.Error):
                if _is_busy(exc):
                    raise _Busy from None
                if _error_code(exc) == SQLITE_READONLY:
                    # SQLite opens a file it cannot write read-only, and the connection stays so: drop it,
                    # so that writes work again (on a new connection) once the file is writable again.
                    self._discard(connection)
                raise self._translate(exc) from exc
            if isinstance(exc, UnicodeEncodeError):
                raise self._translate(exc) from exc
            raise
        if tx.notify:
            self._notify_listeners()
        if tx.streamed:
            self._stream_waiters.wake()
            try:
                self._notify_stream_listeners()
            except Exception:  # the change is committed: its writer must hear so, whatever a listener does
                logger.exception("a stream listener of %s failed", self.path)
        return outcomes

    def _begin(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise _Busy from None
            raise self._translate(exc) from exc

    def _run_plain(self, connection: sqlite3.Connection, batch: Sequence[_Call], now: float) -> list[Any] | None:
        """A batch of sets and updates while events are off, without the transaction's per-call bookkeeping
        (see :mod:`~motia.state.backends.sqlite.plain`); ``None`` if it cannot: the events flag is on, or SQLite
        failed (rolled back; the usual path then runs the batch and reports any error as it does)."""
        self._begin(connection)
        try:
            if _events_flag(connection):  # another process enabled events: its batch records them
                self._events_enabled = True
                outcomes = None
            else:
                outcomes = run_plain(connection, batch, now)
                connection.execute("COMMIT")
        except (sqlite3.Error, UnicodeEncodeError):
            outcomes = None
        except BaseException:
            self._rollback(connection)
            raise
        if outcomes is None:
            self._rollback(connection)
        return outcomes

    def _run_lone(self, connection: sqlite3.Connection, lone: Callable[..., Any], now: float, call: _Call) -> Any:
        """A write alone without a transaction (see :data:`~motia.state.backends.sqlite.keyvalue._LONE_WRITES`).

        Returns its result, a :class:`_Failure` (a conflict or bad operation: nothing was written), or
        :data:`FALLBACK`: the row or the events flag changed since it was read, or SQLite failed (busy, a
        read-only file...); then the transaction path runs the write, and reports any error as it does.
        """
        try:
            return lone(self, connection, now, call.trace, *call.args)
        except (sqlite3.Error, UnicodeEncodeError):
            return FALLBACK
        except Exception as exc:
            return _Failure(exc)

    def _run_call(self, tx: _Transaction, call: _Call, isolate: bool) -> Any:
        """Run one call of a batch; return its result, or a :class:`_Failure` if it raised.

        A failed call changes nothing, whatever it raised and however far it got: its buffered changes
        are undone (:meth:`_Transaction.undo_call`) and, in a batch of several calls, the statements it
        executed itself are rolled back to a ``SAVEPOINT`` taken before it. (Buffered writes execute no
        statement, so they skip the savepoint; a single call needs none, its batch is rolled back whole.)
        """
        statements = call.function not in _BUFFERED_WRITES
        savepoint = isolate and statements
        connection = tx.connection
        if savepoint:
            connection.execute("SAVEPOINT motia_call")
        tx.begin_call()
        tx.trace = call.trace
        try:
            outcome = call.function(tx, *call.args)
        except Exception as exc:
            if not connection.in_transaction:  # SQLite rolled everything back (disk full, I/O error)
                raise
            if statements and not savepoint:
                raise  # no savepoint to return to: roll the (single-call) batch back
            tx.undo_call()
            if savepoint and not self._roll_back_call(connection):
                raise  # it cannot be taken back alone: the whole batch fails, with this call's own error
            if isinstance(exc, sqlite3.Error | UnicodeEncodeError):
                return _Failure(self._translate(exc))
            return _Failure(exc)
        tx.end_call()
        if savepoint:
            connection.execute("RELEASE motia_call")
        return outcome

    def _roll_back_call(self, connection: sqlite3.Connection) -> bool:
        """Undo the statements of the call that began last; ``False`` (logged) if SQLite could not."""
        try:
            connection.execute("ROLLBACK TO motia_call")
            connection.execute("RELEASE motia_call")
        except sqlite3.Error:
            logger.warning("could not roll back one write on %s", self.path, exc_info=True)
            return False
        return True

    def _run_batch_blocking(self, batch: list[_Request]) -> list[Any]:
        # A checkpoint blocking writers: wait for its end here, where it wakes us at once, not in SQLite's
        # busy handler (which polls, sleeping 1, 2, 5, 10 ... ms). Then SQLite waits for anyone else.
        if not self._checkpoint_gate.acquire(timeout=self.timeout):
            raise StateTimeout(f"the state file {self.path} stayed locked for more than {self.timeout:g} s")
        self._checkpoint_gate.release()
        try:
            return self._run_batch(self._connection(inline=False), batch)
        except _Busy:
            raise StateTimeout(f"the state file {self.path} stayed locked for more than {self.timeout:g} s") from None

    def _drain_and_stop(self) -> None:
        """Wait for pending writes, then for the worker threads (checkpoints, reads) to finish.

        Connections are closed only after this: closing a SQLite connection that another thread is
        using is undefined behaviour (it crashed the interpreter once, during a checkpoint).
        """
        deadline = time.monotonic() + self.timeout + 5
        with self._drain:
            while self._in_flight and time.monotonic() < deadline:
                self._drain.wait(0.05)
        self._executor.shutdown(wait=True)
