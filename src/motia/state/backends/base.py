"""The three contracts every state backend implements, written once here: :class:`StateStore` (the
key-value store), :class:`DeliveryStore` (change events, deliveries, cron ticks, leases, retention) and
:class:`StreamStore` (stream items and their change log). All live in one store, so that a change event
commits with the write that caused it; every backend subclasses :class:`StateBackend`, which joins them.

The records the contracts exchange live in :mod:`motia.state.backends.types` (re-exported here).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence

from motia.state.backends.stream_store import StreamStore
from motia.state.backends.types import (
    MAX_ORDER_SLOTS,
    ORPHANED_ERROR,
    DeadLetter,
    Delivery,
    NewDelivery,
    PendingDelivery,
    PruneResult,
    Record,
    ScopeStats,
    StoreStats,
    StreamChange,
    StreamTriggerSubscription,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.ops import Operation

__all__ = [
    "MAX_ORDER_SLOTS",
    "ORPHANED_ERROR",
    "DeadLetter",
    "Delivery",
    "DeliveryStore",
    "NewDelivery",
    "PendingDelivery",
    "PruneResult",
    "Record",
    "ScopeStats",
    "StateBackend",
    "StateStore",
    "StoreStats",
    "StreamChange",
    "StreamStore",
    "StreamTriggerSubscription",
    "Subscription",
    "TransactionWrite",
    "WriteResult",
    "tick_millis",
]


class StateStore:
    """The key-value contract.

    The :class:`~motia.state.manager.StateManager` validates and encodes everything before a backend sees
    it: scopes and keys are valid ``str``, values are encoded JSON ``bytes`` within the size limit, update
    operations are parsed (:mod:`motia.state.ops`), ``ttl`` is a positive float or ``None``, ``if_version``
    a non-negative int or ``None``. Backends store, return encoded ``bytes`` and never decode for the caller.

    Guarantees every backend gives:

    - Every write (``set``, ``update``, ``delete``, ``clear``) is atomic and isolated: concurrent writers
      (tasks, threads, processes, machines) never lose an update; ``update`` reads, applies and writes in
      one atomic step; ``clear`` removes the whole scope in one.
    - A write is acknowledged (its coroutine returns) only once it is durable to the backend's promise.
    - Keys are ordered by code point (``str`` order, equal to UTF-8 byte order) everywhere.
    - Expired keys are absent to every read and every write from the instant they expire.
    - Versions start at 1 on creation and increase by 1 per write; an absent key has version 0.
    - Methods may be awaited from any event loop in any thread (the synchronous twin runs them on a
      private loop), concurrently.
    - Driver errors are translated to :class:`~motia.exceptions.StateBackendError` subclasses.
    """

    #: The backend's URL in normalised form (for SQLite, with the absolute path).
    url: str

    async def get(self, scope: str, key: str) -> Record | None:
        """Return the live record of ``(scope, key)``, or ``None`` when absent or expired."""
        raise NotImplementedError  # pragma: no cover

    def set(
        self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None
    ) -> Awaitable[WriteResult]:
        """Store ``data``; ``ttl`` gives an expiry, ``None`` makes the key permanent.

        Awaitable rather than a coroutine, like :meth:`update`: an implementation may be ``async def`` or hand back
        a future (SQLite's group commit does, sparing a frame per write). Callers await it at once.

        Raises :class:`~motia.exceptions.StateConflictError` (writing nothing) when ``if_version`` is
        given and differs from the stored version (0 when absent).
        """
        raise NotImplementedError  # pragma: no cover

    def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> Awaitable[WriteResult]:
        """Apply ``operations`` atomically to the stored value (``{}`` when absent).

        ``ttl=None`` keeps the current expiry. An empty ``operations`` writes nothing and returns the
        current value twice (``WriteResult(None, None, 0)`` for an absent key). Raises
        :class:`~motia.exceptions.InvalidUpdateError`, :class:`~motia.exceptions.StateValueError` (the
        result is over ``max_value_bytes``) or :class:`~motia.exceptions.StateConflictError`, writing
        nothing.
        """
        raise NotImplementedError  # pragma: no cover

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        """Remove the key; return its encoded value, or ``None`` (and change nothing) when absent."""
        raise NotImplementedError  # pragma: no cover

    async def clear(self, scope: str) -> int:
        """Remove every key of ``scope`` in one atomic step; return how many live keys were removed."""
        raise NotImplementedError  # pragma: no cover

    async def values(self, scope: str) -> list[bytes]:
        """Every live value of ``scope``, in key order."""
        raise NotImplementedError  # pragma: no cover

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        """Live records of ``scope`` in key order with keys ``> after`` that start with ``prefix``.

        Costs in proportion to the page returned, not to the size of the scope.
        """
        raise NotImplementedError  # pragma: no cover

    async def count(self, scope: str) -> int:
        """The number of live keys in ``scope``."""
        raise NotImplementedError  # pragma: no cover

    async def scopes(self) -> list[str]:
        """Sorted scopes holding at least one live key."""
        raise NotImplementedError  # pragma: no cover

    async def purge_expired(self) -> int:
        """Remove expired keys now; return how many were removed."""
        raise NotImplementedError  # pragma: no cover

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        """Atomically check that every ``(scope, key)`` in ``expected`` is at that version (0: absent) and
        apply every write; else raise :class:`~motia.exceptions.StateConflictError` and change nothing.

        Every written key must be in ``expected`` (a transaction reads what it writes). Writes of one
        key apply in order; each changed key fires its events as a plain write would.
        """
        raise NotImplementedError  # pragma: no cover

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        """Write a record moved from another store as it was: its ``version`` (``None``: numbered like a
        write) and absolute ``expires_at``. Without ``replace`` an existing key is left alone and
        ``False`` returned. Fires ``created``/``updated`` like a write."""
        raise NotImplementedError  # pragma: no cover

    async def aclose(self) -> None:
        """Finish pending writes and release every resource. Idempotent."""
        raise NotImplementedError  # pragma: no cover


class DeliveryStore:
    """The delivery contract: state triggers and queues.

    Delivery (state triggers and queues) lives in the same store, so that a change event is recorded in the
    same transaction as the write that caused it (a transactional outbox) and nothing acknowledged is lost
    across a crash:

    - Once events are enabled (persistently, for every process using the store), every write that changes
      state records one event per changed key, in commit order, atomically with the write.
    - ``dispatch_events`` turns recorded events into *deliveries*, one per matching subscription, exactly
      once even with several dispatchers, and forgets the events it consumed. Subscriptions are registered
      in the store by every dispatcher and served as a union, so an app never consumes (and drops) the
      events meant for another app's triggers on the same store: those wait as deliveries for that app.
    - ``enqueue`` adds deliveries directly (queue messages); a delivery id already present is ignored, so a
      retried producer does not duplicate its messages. A delivery with a ``delay`` becomes claimable that
      many seconds after it was added (by the store's clock); one with an ``order_key`` still waits for the
      older deliveries of its key, and the younger ones of its key wait for it, however their delays
      compare.
    - ``claim`` leases ready deliveries to one owner; deliveries sharing an ``order_key`` are leased one at a
      time, oldest first, so per-key order holds across retries. A delivery with ``order_slots`` n > 1
      (keyed concurrency) is claimable while fewer than n older deliveries of its ``(step, order_key)``
      are unsettled: at most n of the key leased at once, started oldest first. A lease that expires (its
      owner died) makes the delivery claimable again, and frees its key's slot only once settled:
      delivery is at least once.
    - ``complete``/``retry``/``dead_letter`` settle a leased delivery; each returns ``False`` (changing
      nothing) when the caller no longer holds the lease. ``complete_many`` completes several at once,
      ``complete_and_claim`` completes them and claims the next ones in one call;
      ``postpone`` gives one back unhandled, its claim not counted as an attempt.
    - ``claim_tick`` lets every instance of an app run the same cron schedule while each tick runs once:
      the first claim of a ``(job, tick)`` wins, in any process using the store.
    - ``acquire_lease``/``release_lease`` give one owner at a time, among every process using the store, a
      named lease that expires unless renewed: a cron job still running holds one, so no other instance
      starts it again.
    - ``add_dead_letters`` keeps messages nobody subscribes to as dead letters (ids already present skipped).
    - ``dead_letter_page``, ``get_dead_letter``, ``redrive_dead_letters``, ``purge_dead_letters`` and
      ``pending_page`` are what operators use: list (paginated, filtered), inspect, deliver again, delete.
    - ``touch_steps`` records which steps running apps serve; ``prune`` applies retention: old dead letters
      go, the deliveries and subscriptions of steps no app has served for a long time (a renamed or
      removed step) become dead letters, never silently dropped, and old stream history goes.
    """

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (from any thread; keep it cheap and thread-safe) after each commit that
        recorded events or added deliveries, so local workers wake at once instead of polling.
        Other processes' commits are seen only where the backend is told of them (PostgreSQL: its
        ``NOTIFY``); workers also poll."""
        listeners: list[Callable[[], None]] = self.__dict__.setdefault("_listeners", [])
        listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        listeners: list[Callable[[], None]] = self.__dict__.get("_listeners", [])
        if callback in listeners:
            listeners.remove(callback)

    def _notify_listeners(self) -> None:
        for callback in list(self.__dict__.get("_listeners", ())):
            callback()

    async def enable_events(self) -> None:
        """Record change events from now on, for every process using this store (persistent)."""
        raise NotImplementedError  # pragma: no cover

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        """Turn up to ``limit`` recorded events into deliveries for the matching ``subscriptions``.

        The payload of a state delivery is the JSON object ``{"type": "state", "event_type",
        "group_id", "item_id", "old_value", "new_value", "version", "timestamp", "seq"}``; its id is
        ``f"state:{seq}:{step}"`` and its ``order_key`` the (scope, key) pair. Returns how many events
        were consumed (0: none pending). Atomic: an event is dispatched exactly once.
        """
        raise NotImplementedError  # pragma: no cover

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        """Add deliveries atomically (all or none); ids already present are skipped. Returns how many were new.

        Each is claimable from ``now + delivery.delay`` (``delay`` >= 0 seconds, by the store's clock) and,
        with an ``order_key``, only once fewer than its ``order_slots`` (an int from 1 to
        :data:`MAX_ORDER_SLOTS`; 1: every one) older deliveries of its ``(step, order_key)`` remain
        unsettled. Deliveries of one key are meant to share ``order_slots``; where they differ, each is
        held back by its own."""
        raise NotImplementedError  # pragma: no cover

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        """Lease up to ``limit`` ready deliveries of ``steps`` to ``owner`` for ``lease`` seconds, oldest first."""
        raise NotImplementedError  # pragma: no cover

    async def next_due(self, steps: Sequence[str]) -> float | None:
        """Seconds from now until a delivery of ``steps`` that is not claimable now becomes claimable with no
        new commit: a delayed or retried one (when it is available) or a leased one (when its lease ends);
        ``None`` when no delivery of ``steps`` waits for a time. A delivery claimable now, or waiting only
        for an older one of its order key to be settled (a commit), does not count; neither do times past.

        With :attr:`wakes_other_processes`, this is all an idle worker waits for besides a listener call
        (see :mod:`motia.runtime.delivery`). Never early by more than the store's clock resolution; a
        time it reports may pass with nothing to claim (another instance claimed first): a wasted look."""
        raise NotImplementedError  # pragma: no cover

    @property
    def wakes_other_processes(self) -> bool:
        """Whether, right now, the listeners of :meth:`add_listener` are called for the commits of every
        process using the store (that recorded events or made deliveries claimable), not only this one's.

        When true, an idle worker and dispatcher wait for a listener call or :meth:`next_due` instead of
        polling, so an idle app costs the store (almost) nothing. ``False`` by default: SQLite, Redis and
        the memory store (whose fake clocks tests advance by hand) are polled. PostgreSQL: while its
        ``LISTEN`` connection is up."""
        return False

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        """Renew ``owner``'s leases on ``ids`` (a long handler keeps its deliveries)."""
        raise NotImplementedError  # pragma: no cover

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        """Remove a delivery its owner handled."""
        raise NotImplementedError  # pragma: no cover

    async def complete_many(self, delivery_ids: Sequence[str], *, owner: str) -> set[str]:
        """Remove the deliveries of ``delivery_ids`` that ``owner`` still holds, as :meth:`complete` would
        each; return the ids removed (the others, no longer held, are left alone).

        The worker settles the handlers that finished together in one call: a backend that can remove
        them in one statement (SQLite) or one round trip makes the completion of a busy trigger cost a
        fraction of one call per delivery. Each delivery is settled on its own terms, so a lost lease
        on one never keeps the others from completing. This default completes them one by one,
        concurrently.
        """
        if not delivery_ids:
            return set()
        done = await asyncio.gather(*(self.complete(delivery_id, owner=owner) for delivery_id in delivery_ids))
        return {delivery_id for delivery_id, ok in zip(delivery_ids, done, strict=True) if ok}

    #: Whether :meth:`complete_and_claim` completes and claims in one transaction (SQLite). Only then does the
    #: delivery worker hold a returned handler's completion for its next claim: where the two are separate
    #: calls anyway, it writes completions on their own, beside its claims, and a slow completion never
    #: delays a claim.
    completes_with_claim = False

    async def complete_and_claim(
        self, delivery_ids: Sequence[str], *, owner: str, steps: Sequence[str], limit: int, lease: float
    ) -> tuple[set[str], list[Delivery]]:
        """:meth:`complete_many` of ``delivery_ids``, then :meth:`claim` of ``steps`` (``limit``, ``lease``) for
        the same ``owner``; return both answers, ``(completed ids, claimed deliveries)``.

        The worker settles the handlers that returned and leases the next deliveries back to back: a backend
        that can do both in one transaction (SQLite) saves a commit per round. The claim sees the completions,
        so the next delivery of a key completed here may be claimed by the same call. Where the backend does
        both in one transaction, they commit together or not at all; if this raises, nothing was claimed, and
        the caller treats the completions as failed (they may have been written by this default, made of the
        two calls: a delivery whose completion is not written is claimed again once its lease expires, so
        delivery stays at least once either way).
        """
        done = await self.complete_many(delivery_ids, owner=owner) if delivery_ids else set()
        return done, await self.claim(steps, owner=owner, limit=limit, lease=lease)

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        """Release a failed delivery, claimable again after ``delay`` seconds. ``error`` (the attempt's
        error, as for :meth:`dead_letter`) is kept as its last error, and as its first when none was:
        :meth:`pending_page` shows them, and its dead letter, if it comes to that, keeps the first."""
        raise NotImplementedError  # pragma: no cover

    async def postpone(self, delivery_id: str, *, owner: str, delay: float) -> bool:
        """Give a leased delivery back unhandled: claimable again after ``delay`` seconds (>= 0), and the
        claim that leased it not counted (``attempts`` back to what it was before it).

        Flow control (:mod:`motia.runtime.flow_control`) postpones a message over its rate limit until
        the window opens: a wait, not a failed attempt, so it never brings the message nearer to its
        dead letter. Keeps the delivery's place in its ``order_key`` (the younger ones still wait for
        it). Returns ``False``, changing nothing, when ``owner`` no longer holds the lease."""
        raise NotImplementedError  # pragma: no cover

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        """Move a delivery that failed for good to the dead letters, ``error`` as its last error and the
        first error :meth:`retry` kept (else ``error``) as its first."""
        raise NotImplementedError  # pragma: no cover

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first (of one ``step``, or all)."""
        raise NotImplementedError  # pragma: no cover

    async def dead_letter_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        """A page of dead letters, ordered by failure time then id (the same order on every backend).

        ``step`` and ``kind`` (``None``: any) narrow it in the store; ``after`` is the
        :attr:`~DeadLetter.cursor` of the last letter of the previous page (``None``: from the oldest), so
        paging never repeats or skips a letter that stays, however many are added, redriven or purged
        meanwhile. At most ``limit`` letters. Raises :class:`~motia.exceptions.StateValueError` (nothing
        read) for a malformed ``after`` or a ``limit`` that is not a positive ``int``.
        """
        raise NotImplementedError  # pragma: no cover

    async def get_dead_letter(self, delivery_id: str) -> DeadLetter | None:
        """The dead letter ``delivery_id`` (``None``: there is none)."""
        raise NotImplementedError  # pragma: no cover

    async def redrive_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        """Deliver dead letters again: each becomes a new delivery of the same id, step, kind and payload
        (so a queue message keeps its trace id), claimable at once, its attempts and errors reset, with no
        order key (it was already out of its key's order when it failed). The dead letter is removed, not
        kept as history: the id is the delivery's again, and if it fails for good once more it becomes a
        dead letter of the same id, with the new attempts and errors.

        Atomic (all or none) and durable like a write. Ids that are not dead letters are skipped, and so
        is an id that is (again) a pending delivery: redriving it would overwrite a delivery in flight.
        Returns the ids redriven, in the order given; listeners are called when any was.
        Raises :class:`~motia.exceptions.StateValueError` (changing nothing) unless ``delivery_ids`` is a
        sequence of ``str``.
        """
        raise NotImplementedError  # pragma: no cover

    async def purge_dead_letters(self, delivery_ids: Sequence[str]) -> list[str]:
        """Delete dead letters for good; ids that are not dead letters are skipped. Atomic (all or none)
        and durable like a write. Returns the ids deleted, in the order given; checks its argument as
        :meth:`redrive_dead_letters` does."""
        raise NotImplementedError  # pragma: no cover

    async def pending_page(
        self, *, step: str | None = None, kind: str | None = None, after: str | None = None, limit: int = 100
    ) -> list[PendingDelivery]:
        """A page of the deliveries not yet settled (leased or waiting), in the order they were added.

        Filters and paging as :meth:`dead_letter_page` (``after``: the :attr:`PendingDelivery.cursor` of the
        previous page's last delivery). Each says its attempts, when it is claimable, its lease and the
        errors of its failed attempts (recorded by :meth:`retry`).
        """
        raise NotImplementedError  # pragma: no cover

    async def pending(self, step: str | None = None) -> int:
        """Deliveries not yet settled (leased or waiting), of one ``step`` or all."""
        raise NotImplementedError  # pragma: no cover

    async def pending_by_step(self) -> dict[str, int]:
        """Deliveries not yet settled, counted per step (steps with none are absent): what operators list
        without knowing the app's steps (``motia deliveries list``, the console)."""
        raise NotImplementedError  # pragma: no cover

    async def add_dead_letters(self, deliveries: Sequence[NewDelivery], *, error: str) -> int:
        """Keep ``deliveries`` as dead letters straight away, never delivered: a message that no step
        subscribes to is kept for inspection (SPEC 12) rather than refused or dropped.

        Each gets ``attempts`` 0, ``created_at`` and ``failed_at`` now and the ``error`` text (lone
        surrogates kept as escapes, as for :meth:`dead_letter`); ``order_key`` is ignored. A delivery
        whose id is already a pending delivery or a dead letter is skipped, so a retried producer (the
        deterministic message ids of a retried handler) does not duplicate it. Atomic (all or none) and
        durable like a write; :meth:`dead_letters` lists them and :meth:`prune` ages them like any dead
        letter. Returns how many were added. Listeners are not called: nothing became claimable.
        """
        raise NotImplementedError  # pragma: no cover

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        """Claim one tick of a scheduled ``job``: ``True`` for exactly one caller per ``(job, tick)`` among
        every process using this store, ``False`` for all the others.

        ``tick`` is the tick's scheduled time (Unix seconds), which every instance computes alike from
        the schedule; it is compared at millisecond precision (:func:`tick_millis`). The claim is
        remembered at least ``hold`` seconds (longer than any clock skew between instances), after
        which it may be forgotten and the tick claimed again. Atomic, and durable like a write.
        """
        raise NotImplementedError  # pragma: no cover

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        """Take, or renew, the lease ``name`` for ``owner`` until ``ttl`` seconds from now.

        Returns ``True`` when ``owner`` holds the lease afterwards: it was free, expired, or already
        ``owner``'s (then its expiry moves to now + ``ttl``). Returns ``False``, changing nothing, while
        another owner holds an unexpired lease. Atomic across every process using the store, and durable
        like a write; a retried call (lost reply) must give the same answer.

        The runtime calls this directly, so the backend checks its arguments: an empty or non-``str``
        ``name``/``owner`` (or one not encodable as UTF-8), or a ``ttl`` that is not a positive finite
        number, raises :class:`~motia.exceptions.StateValueError` and changes nothing.
        """
        raise NotImplementedError  # pragma: no cover

    async def release_lease(self, name: str, owner: str) -> bool:
        """Give up ``owner``'s lease ``name`` at once; ``True`` if it was held by ``owner`` (and unexpired),
        ``False`` (changing nothing) otherwise. ``name`` and ``owner`` are checked as by :meth:`acquire_lease`."""
        raise NotImplementedError  # pragma: no cover

    async def touch_steps(self, steps: Sequence[str]) -> None:
        """Record that a running app serves ``steps`` now (their last-seen time becomes now).

        Apps call it at start and then periodically (far more often than any retention age), so that
        :meth:`prune` can tell a step that still runs somewhere from one that was renamed or removed.
        A last-seen time never moves back. Raises :class:`~motia.exceptions.StateValueError` (changing
        nothing) unless ``steps`` is a sequence of non-empty ``str``.
        """
        raise NotImplementedError  # pragma: no cover

    async def prune(
        self,
        *,
        dead_letter_age: float | None,
        step_age: float | None,
        stream_age: float | None = None,
        dead_letter_limit: int | None = None,
    ) -> PruneResult:
        """Apply retention once, atomically per part (a part may take several transactions, each
        complete); ``None`` skips a part.

        - Dead letters that failed more than ``dead_letter_age`` seconds ago are deleted; then, beyond the
          newest ``dead_letter_limit`` (by failure time, then id), the oldest are deleted too. Both count in
          :attr:`PruneResult.dead_letters`.
        - Steps touched (:meth:`touch_steps`) last more than ``step_age`` seconds ago are forgotten: their
          state-trigger subscriptions are removed (new events no longer make deliveries for them) and
          their waiting deliveries become dead letters with the error :data:`ORPHANED_ERROR`, so
          nothing is lost silently. Leased deliveries are left alone (their worker is still running):
          such a step loses its subscriptions at once but is forgotten (and counted in
          :attr:`PruneResult.steps`) by the first prune that finds none of its deliveries left; a
          delivery whose lease has expired counts as waiting.
          Steps that were never touched are never pruned (stores written by older versions).
        - Stream changes recorded more than ``stream_age`` seconds ago (by their ``timestamp``) are removed
          from the groups' histories, whatever ``history`` asked (the tail's log keeps its own minimum,
          see :class:`StreamStore`), and a group left with no item and no change is forgotten: it is no
          longer counted, and should it be written again its ``seq`` continues after the largest ``seq``
          of every group the store forgot (the store keeps that one number), so a ``seq`` never repeats
          within a group and a client resuming from an older one gets ``None`` from
          :meth:`StreamStore.stream_history` (a full sync). An absent group's ``seq``
          (:meth:`StreamStore.stream_snapshot`) is that number too (0 until a group is forgotten).

        Raises :class:`~motia.exceptions.StateValueError` (changing nothing) for an age that is not
        ``None`` or a finite number of seconds >= 0, or a ``dead_letter_limit`` that is not ``None`` or
        an ``int`` >= 0.
        """
        raise NotImplementedError  # pragma: no cover


class StateBackend(StateStore, DeliveryStore, StreamStore):
    """Base class of the backends. Subclasses implement every method of the three contracts."""

    async def stats(self) -> StoreStats:
        """What the store holds and the space it takes (:class:`StoreStats`), for operators: keys per
        scope (the runtime's ``__motia.`` scopes included) with their bytes where the backend can tell
        without reading every value, expired keys not yet swept, the outbox, pending deliveries, dead
        letters, subscriptions, known steps, stream groups, items and change-log length, and the
        backend's size figures.

        Reads only: it writes nothing, takes no lock another writer waits on for long, and fires no
        event (an expired key is counted, not removed). Each figure is exact when read, but the figures
        are not one atomic snapshot: a store in use may change between two of them. Costs a scan of the
        keys (a count per scope) and a count per table, so it is for an operator's command, not a hot path.
        """
        raise NotImplementedError  # pragma: no cover
