"""Deliveries on PostgreSQL: the outbox dispatch, leased deliveries and their settling, dead letters, cron
tick claims, named leases and retention. :class:`PostgresDelivery` is a mixin of
:class:`~motia.state.backends.postgres.backend.PostgresBackend`; each write is a body run by
:meth:`~motia.state.backends.postgres.connection.PostgresConnections._transact` (``function(tx, *args)``).

How the contract's guarantees are kept by the database, not by one process:

- **Exactly-once dispatch.** ``dispatch_events`` locks the ``outbox`` row of ``motia_meta`` for its
  transaction, so dispatchers take turns, and *deletes* the events it consumes (``DELETE ... RETURNING``):
  no cursor can skip an event whose transaction committed late with a smaller ``seq``. Delivery ids are
  built from the event's ``seq`` (an identity, never reused).
- **Claims** use ``FOR UPDATE SKIP LOCKED``: concurrent claimers pass over each other's rows instead of
  queueing. A delivery with an ``order_key`` is claimable only when no older delivery of its
  ``(step, order_key)`` remains, so one is leased at a time, oldest first, across retries.
- **Per-key order is commit order.** ``seq`` is an identity, allocated at insert, and two transactions
  can commit in the other order; a claimer could then lease the younger before the older is visible. So
  every writer of ordered deliveries is serialised per key: dispatch by the outbox lock, stream changes by
  the stream log's head row (:mod:`~motia.state.backends.postgres.streams`), and ``enqueue`` by a
  transaction-scoped advisory lock per ``(step, order_key)``, taken in sorted order (no deadlock).
- **Wake-ups across processes.** A transaction that makes something dispatchable or claimable sets
  ``tx.notify``: :meth:`PostgresDelivery._before_commit` then sends ``NOTIFY`` in it (delivered at commit,
  only if it commits), and local listeners run after the commit (:mod:`~motia.state.backends.postgres.notify`).
- **A retried call answers as the first.** A transaction whose ``COMMIT`` lost its connection is not run
  again when it committed (see the connection layer), so ``complete`` or ``release_lease`` never answers
  ``False`` for its own success.

Times are the backend's clock (``clock=``, Unix seconds; ``tx.now``) passed as parameters, never ``now()``,
as on every backend. Steps, delivery ids, owners, lease and job names are ``text``; payloads and error texts
``bytea`` (a handler's error message may hold a NUL, which ``text`` cannot).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from motia.state.backends._events import error_text, state_deliveries
from motia.state.backends._writes import check_age, check_lease, check_lease_ttl, check_steps, orphaned_error
from motia.state.backends.base import DeliveryStore
from motia.state.backends.postgres.claim import claim_rows
from motia.state.backends.postgres.notify import Notifier, channel_for
from motia.state.backends.types import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Subscription,
    tick_millis,
)

if TYPE_CHECKING:
    from motia.state.backends.postgres.connection import Tx

T = TypeVar("T")

#: Forgotten cron tick claims are deleted at most this often (seconds), by the claim that comes next.
TICK_PRUNE_INTERVAL = 60.0

#: ``(step, order_key)`` pairs are locked by a 64-bit hash of this text (the schema keeps apps that share
#: a database apart; a collision only makes two producers take turns).
_ORDER_LOCK = "motia.order:{schema}:{step}:{order_key}"

_INSERT_DELIVERIES = """
    INSERT INTO motia_deliveries (id, step, kind, payload, order_key, order_slots, available_at, created_at)
    SELECT d.id, d.step, d.kind, d.payload, d.order_key, d.order_slots, $6 + d.delay, $6
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::text[], $7::float8[], $8::int[])
        WITH ORDINALITY AS d (id, step, kind, payload, order_key, delay, order_slots, n)
    ORDER BY d.n
    ON CONFLICT (id) DO NOTHING"""

#: Whether a claim (:func:`~motia.state.backends.postgres.claim.claim_rows`) may find anything (it may still not:
#: an older delivery of its key may block it).
_CLAIMABLE = """
    SELECT EXISTS (
        SELECT 1 FROM motia_deliveries
        WHERE step = ANY($1::text[]) AND available_at <= $2 AND (owner IS NULL OR lease_until <= $2)
    )"""

#: When the first delivery of the steps that waits for a time becomes claimable (see ``next_due``).
_NEXT_DUE = """
    SELECT min(due) FROM (
        SELECT CASE WHEN owner IS NOT NULL AND lease_until > $2 THEN greatest(available_at, lease_until)
            ELSE available_at END AS due
        FROM motia_deliveries WHERE step = ANY($1::text[])
    ) AS d WHERE due > $2"""

_DEAD_LETTER_COLUMNS = "id, step, kind, payload, attempts, error, created_at, failed_at, first_error"
#: Moves the deliveries a ``gone AS (DELETE ... RETURNING ...)`` removed to the dead letters (``$3``: the
#: error, ``$4``: now), replacing a dead letter of the same id; answers one row per delivery moved.
_TO_DEAD_LETTERS = f"""
    , moved AS (
        INSERT INTO motia_dead_letters ({_DEAD_LETTER_COLUMNS})
        SELECT id, step, kind, payload, attempts, $3, created_at, $4, coalesce(first_error, $3) FROM gone
        ON CONFLICT (id) DO UPDATE SET step = excluded.step, kind = excluded.kind, payload = excluded.payload,
            attempts = excluded.attempts, error = excluded.error, created_at = excluded.created_at,
            failed_at = excluded.failed_at, first_error = excluded.first_error
    )
    SELECT order_key FROM gone"""

_NOTIFY = "SELECT pg_notify($1, $2)"


def _count(status: str) -> int:
    """The row count of a command status (``"DELETE 3"``, ``"INSERT 0 2"``)."""
    return int(status.rsplit(" ", 1)[1])


def _error_bytes(error: str) -> bytes:
    return error_text(error).encode("utf-8")


def _text(value: Any) -> str:
    """A scope or key as stored (UTF-8 ``bytea``) as ``str``."""
    return value if isinstance(value, str) else bytes(value).decode()


def _dead_letter_of(row: Sequence[Any]) -> DeadLetter:
    delivery_id, step, kind, payload, attempts, error, created_at, failed_at, first_error = row
    first = None if first_error is None else bytes(first_error).decode()
    error_str = bytes(error).decode()
    return DeadLetter(delivery_id, step, kind, bytes(payload), attempts, error_str, created_at, failed_at, first)


async def insert_deliveries(tx: Tx, deliveries: Sequence[NewDelivery]) -> int:
    """Insert ``deliveries`` (ids present skipped) in one statement; return how many were new. Sets
    ``tx.notify`` when any was."""
    status = await tx.conn.execute(
        _INSERT_DELIVERIES,
        [new.id for new in deliveries],
        [new.step for new in deliveries],
        [new.kind for new in deliveries],
        [new.payload for new in deliveries],
        [new.order_key for new in deliveries],
        tx.now,
        [float(new.delay) for new in deliveries],
        [new.order_slots for new in deliveries],
    )
    added = _count(status)
    tx.notify = tx.notify or added > 0
    return added


# -- the writes: each runs in one transaction, ``function(tx, *args)`` --------------------------------------


async def _enable_events(tx: Tx) -> None:
    # An UPDATE of the flag row, which writes that have not seen it on read FOR SHARE: it waits for them,
    # and every write after it records its events (see the schema module).
    await tx.conn.execute("UPDATE motia_meta SET value = '1' WHERE name = 'events'")


async def _dispatch(tx: Tx, subscriptions: Sequence[Subscription], limit: int) -> int:
    conn = tx.conn
    await tx.start()  # its commit token before the outbox lock, which is then held for as short a time as can be
    # Dispatchers take turns (the row lock is held to commit): each event is consumed exactly once, and the
    # deliveries of one key are inserted in the order of its events.
    await conn.execute("SELECT 1 FROM motia_meta WHERE name = 'outbox' FOR UPDATE")
    if subscriptions:  # registered by every dispatcher, served as a union (b'': any scope or key)
        await conn.execute(
            "INSERT INTO motia_subscriptions (step, scope, key)"
            " SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[]) ON CONFLICT DO NOTHING",
            [s.step for s in subscriptions],
            [(s.scope or "").encode() for s in subscriptions],
            [(s.key or "").encode() for s in subscriptions],
        )
    rows = await conn.fetch(
        "DELETE FROM motia_state_events WHERE seq IN (SELECT seq FROM motia_state_events ORDER BY seq LIMIT $1)"
        " RETURNING seq, event_type, scope, key, old_value, new_value, version, timestamp, trace",
        limit,
    )
    if not rows:
        return 0
    registered = [
        Subscription(step, _text(scope) or None, _text(key) or None)
        for step, scope, key in await conn.fetch("SELECT step, scope, key FROM motia_subscriptions")
    ]
    deliveries = [
        delivery
        for seq, event_type, scope, key, old, new, version, timestamp, trace in sorted(rows, key=lambda row: row[0])
        for delivery in state_deliveries(
            registered,
            seq,
            event_type,
            _text(scope),
            _text(key),
            None if old is None else bytes(old),
            None if new is None else bytes(new),
            version,
            timestamp,
            trace,
        )
    ]
    if deliveries:
        await insert_deliveries(tx, deliveries)
    return len(rows)


async def _enqueue(tx: Tx, deliveries: Sequence[NewDelivery], schema: str) -> int:
    keys = sorted({(new.step, new.order_key) for new in deliveries if new.order_key is not None})
    if keys:  # producers of one (step, order_key) take turns to commit: seq order is commit order
        await tx.conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k ORDER BY k",
            sorted(_ORDER_LOCK.format(schema=schema, step=step, order_key=key) for step, key in keys),
        )
    return await insert_deliveries(tx, deliveries)


async def _add_dead_letters(tx: Tx, deliveries: Sequence[NewDelivery], error: bytes) -> int:
    status = await tx.conn.execute(
        f"INSERT INTO motia_dead_letters ({_DEAD_LETTER_COLUMNS})"
        " SELECT d.id, d.step, d.kind, d.payload, 0, $5, $6, $6, $5"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) AS d (id, step, kind, payload)"
        " WHERE NOT EXISTS (SELECT 1 FROM motia_deliveries e WHERE e.id = d.id)"
        " ON CONFLICT (id) DO NOTHING",
        [new.id for new in deliveries],
        [new.step for new in deliveries],
        [new.kind for new in deliveries],
        [new.payload for new in deliveries],
        error,
        tx.now,
    )
    return _count(status)


async def _claim(tx: Tx, steps: list[str], owner: str, limit: int, lease: float) -> list[Delivery]:
    return [
        Delivery(delivery_id, step, kind, bytes(payload), attempts, created_at)
        for _, delivery_id, step, kind, payload, attempts, created_at in await claim_rows(
            tx, steps, owner, limit, lease
        )
    ]


async def _extend(tx: Tx, ids: list[str], owner: str, lease: float) -> None:
    await tx.conn.execute(
        "UPDATE motia_deliveries SET lease_until = $1 WHERE owner = $2 AND id = ANY($3::text[])",
        tx.now + lease,
        owner,
        ids,
    )


async def _complete(tx: Tx, ids: list[str], owner: str) -> builtins.set[str]:
    rows = await tx.conn.fetch(
        "DELETE FROM motia_deliveries WHERE owner = $1 AND id = ANY($2::text[]) RETURNING id, order_key", owner, ids
    )
    # The next delivery of an ordered key is claimable now, in any process.
    tx.notify = any(order_key is not None for _, order_key in rows)
    return {delivery_id for delivery_id, _ in rows}


async def _retry(tx: Tx, delivery_id: str, owner: str, delay: float, error: bytes) -> bool:
    status = await tx.conn.execute(
        "UPDATE motia_deliveries SET owner = NULL, lease_until = 0, available_at = $1, last_error = $4,"
        " first_error = coalesce(first_error, $4) WHERE id = $2 AND owner = $3",
        tx.now + delay,
        delivery_id,
        owner,
        error,
    )
    # Idle workers elsewhere wait for their next due time, which this one may now come before.
    tx.notify = _count(status) == 1
    return tx.notify


async def _postpone(tx: Tx, delivery_id: str, owner: str, delay: float) -> bool:
    # Its claim is not an attempt: the count goes back to what it was.
    status = await tx.conn.execute(
        "UPDATE motia_deliveries SET owner = NULL, lease_until = 0, available_at = $1,"
        " attempts = greatest(attempts - 1, 0) WHERE id = $2 AND owner = $3",
        tx.now + delay,
        delivery_id,
        owner,
    )
    return _count(status) == 1


async def _dead_letter(tx: Tx, delivery_id: str, owner: str, error: bytes) -> bool:
    rows = await tx.conn.fetch(
        "WITH gone AS (DELETE FROM motia_deliveries WHERE id = $1 AND owner = $2"
        f" RETURNING id, step, kind, payload, attempts, created_at, order_key, first_error){_TO_DEAD_LETTERS}",
        delivery_id,
        owner,
        error,
        tx.now,
    )
    tx.notify = any(order_key is not None for (order_key,) in rows)
    return bool(rows)


async def _claim_tick(tx: Tx, job: str, tick: int, hold: float, prune: bool) -> bool:
    if prune:  # at most ``hold`` seconds of ticks, once a minute
        await tx.conn.execute("DELETE FROM motia_cron_ticks WHERE expires_at <= $1", tx.now)
    # A claim past its hold is forgotten: the upsert takes it again, as if it were absent.
    row = await tx.conn.fetchrow(
        "INSERT INTO motia_cron_ticks (job, tick, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (job, tick) DO UPDATE SET expires_at = excluded.expires_at"
        " WHERE motia_cron_ticks.expires_at <= $4 RETURNING 1",
        job,
        tick,
        tx.now + hold,
        tx.now,
    )
    return row is not None


async def _acquire_lease(tx: Tx, name: str, owner: str, ttl: float) -> bool:
    # One statement: the row is taken when absent, expired or already ours; else the upsert's WHERE leaves
    # it alone and returns no row.
    row = await tx.conn.fetchrow(
        "INSERT INTO motia_leases (name, owner, expires_at) VALUES ($1, $2, $3)"
        " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
        " WHERE motia_leases.owner = excluded.owner OR motia_leases.expires_at <= $4 RETURNING 1",
        name,
        owner,
        tx.now + ttl,
        tx.now,
    )
    return row is not None


async def _release_lease(tx: Tx, name: str, owner: str) -> bool:
    status = await tx.conn.execute(
        "DELETE FROM motia_leases WHERE name = $1 AND owner = $2 AND expires_at > $3", name, owner, tx.now
    )
    return _count(status) == 1


async def _touch_steps(tx: Tx, steps: list[str]) -> None:
    await tx.conn.execute(
        "INSERT INTO motia_steps (step, seen_at) SELECT DISTINCT unnest($1::text[]), $2::float8"
        " ON CONFLICT (step) DO UPDATE SET seen_at = greatest(motia_steps.seen_at, excluded.seen_at)",
        steps,
        tx.now,
    )


async def _cap_dead_letters(tx: Tx, limit: int) -> int:
    """Delete the dead letters beyond the newest ``limit`` (by failure time, then id: the listing's order)."""
    status = await tx.conn.execute(
        "DELETE FROM motia_dead_letters WHERE id IN"
        " (SELECT id FROM motia_dead_letters ORDER BY failed_at DESC, id DESC OFFSET $1)",
        limit,
    )
    return int(status.rsplit(" ", 1)[1])


async def _prune(tx: Tx, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
    conn = tx.conn
    removed = forgotten = orphaned = 0
    if dead_letter_age is not None:
        removed = _count(
            await conn.execute("DELETE FROM motia_dead_letters WHERE failed_at < $1", tx.now - dead_letter_age)
        )
    if step_age is None:
        return PruneResult(removed, 0, 0)
    stale = await conn.fetch(
        "SELECT step, seen_at FROM motia_steps WHERE seen_at < $1 ORDER BY step FOR UPDATE", tx.now - step_age
    )
    for step, seen_at in stale:
        # Waiting deliveries (an expired lease counts as waiting) become dead letters; leased ones stay.
        moved = await conn.fetch(
            "WITH gone AS (DELETE FROM motia_deliveries WHERE step = $1 AND (owner IS NULL OR lease_until <= $2)"
            f" RETURNING id, step, kind, payload, attempts, created_at, order_key, first_error){_TO_DEAD_LETTERS}",
            step,
            tx.now,
            _error_bytes(orphaned_error(step, seen_at)),
            tx.now,
        )
        orphaned += len(moved)
        await conn.execute("DELETE FROM motia_subscriptions WHERE step = $1", step)
        await conn.execute("DELETE FROM motia_stream_subscriptions WHERE step = $1", step)
        if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM motia_deliveries WHERE step = $1)", step):
            await conn.execute("DELETE FROM motia_steps WHERE step = $1", step)
            forgotten += 1
    tx.notify = orphaned > 0
    return PruneResult(removed, forgotten, orphaned)


class PostgresDelivery(DeliveryStore):
    """The :class:`~motia.state.backends.base.DeliveryStore` methods of the PostgreSQL backend (a mixin: the
    host supplies ``_transact``, ``_fetch``, ``_connect``, ``_clock``, ``schema`` and ``url``)."""

    url: str
    schema: str
    _clock: Callable[[], float]
    _events_enabled: bool
    _notifier: Notifier

    if TYPE_CHECKING:  # provided by the host class

        async def _transact(
            self, body: Callable[..., Awaitable[T]], *args: Any, what: str = "write", events: bool = True
        ) -> T: ...
        async def _fetch(self, sql: str, *args: Any, what: str = "read") -> list[Any]: ...
        async def _connect(self) -> Any: ...
        def _stream_committed_elsewhere(self) -> None: ...

    def _init_delivery(self) -> None:
        self._ticks_pruned = 0.0
        #: The subscriptions this instance has registered in the store (they stay until retention forgets
        #: a step no app serves, which a running app's steps never are).
        self._registered: builtins.set[Subscription] = set()
        self._notifier = Notifier(
            self._connect,
            channel_for(self.schema),
            on_deliveries=self._notify_listeners,
            on_stream=self._stream_committed_elsewhere,
            name=self.url,
        )

    async def _close_delivery(self) -> None:
        """Stop listening for other processes' commits (the listener's thread is joined off the loop)."""
        await asyncio.get_running_loop().run_in_executor(None, self._notifier.close)

    def add_listener(self, callback: Callable[[], None]) -> None:
        super().add_listener(callback)
        self._notifier.start()  # other processes' commits wake this process's workers too

    async def _before_commit(self, tx: Tx) -> None:
        """``tx.notify`` was set: other processes learn of the new events or deliveries with the commit."""
        await tx.conn.execute(_NOTIFY, self._notifier.channel, self._notifier.payload("d"))

    async def enable_events(self) -> None:
        await self._transact(_enable_events, what="enable events", events=False)
        self._events_enabled = True

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        # Subscriptions this instance registered stay registered (retention forgets only steps no running app
        # serves): only new ones are written.
        new = [subscription for subscription in dict.fromkeys(subscriptions) if subscription not in self._registered]
        # Workers poll: an idle poll is one read, not a transaction (which would take an xid and a WAL flush).
        if not new:
            rows = await self._fetch("SELECT EXISTS (SELECT 1 FROM motia_state_events)", what="dispatch events")
            if not rows[0][0]:
                return 0
        consumed: int = await self._transact(_dispatch, new, limit, what="dispatch events", events=False)
        self._registered.update(new)
        return consumed

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        if not deliveries:
            return 0
        added: int = await self._transact(_enqueue, list(deliveries), self.schema, what="enqueue", events=False)
        return added

    async def add_dead_letters(self, deliveries: Sequence[NewDelivery], *, error: str) -> int:
        if not deliveries:
            return 0
        added: int = await self._transact(
            _add_dead_letters, list(deliveries), _error_bytes(error), what="add dead letters", events=False
        )
        return added

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        if not steps or limit <= 0:
            return []
        # Workers poll: an idle poll is one read, not a transaction (which would take an xid and a WAL flush).
        rows = await self._fetch(_CLAIMABLE, list(steps), self._clock(), what="claim deliveries")
        if not rows[0][0]:
            return []
        claimed: list[Delivery] = await self._transact(
            _claim, list(steps), owner, limit, lease, what="claim deliveries", events=False
        )
        return claimed

    async def next_due(self, steps: Sequence[str]) -> float | None:
        if not steps:
            return None
        now = self._clock()
        rows = await self._fetch(_NEXT_DUE, list(steps), now, what="next due delivery")
        due = rows[0][0]
        return None if due is None else float(due) - now

    @property
    def wakes_other_processes(self) -> bool:
        # Every commit that records events or makes a delivery claimable sends NOTIFY (see _before_commit).
        return self._notifier.listening

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        if ids:
            await self._transact(_extend, list(ids), owner, lease, what="extend leases", events=False)

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        return bool(await self.complete_many([delivery_id], owner=owner))

    async def complete_many(self, delivery_ids: Sequence[str], *, owner: str) -> builtins.set[str]:
        if not delivery_ids:
            return set()
        done: builtins.set[str] = await self._transact(
            _complete, list(dict.fromkeys(delivery_ids)), owner, what="complete deliveries", events=False
        )
        return done

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        done: bool = await self._transact(
            _retry, delivery_id, owner, delay, _error_bytes(error), what="retry a delivery", events=False
        )
        return done

    async def postpone(self, delivery_id: str, *, owner: str, delay: float) -> bool:
        done: bool = await self._transact(
            _postpone, delivery_id, owner, delay, what="postpone a delivery", events=False
        )
        return done

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        done: bool = await self._transact(
            _dead_letter, delivery_id, owner, _error_bytes(error), what="dead-letter a delivery", events=False
        )
        return done

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        sql = f"SELECT {_DEAD_LETTER_COLUMNS} FROM motia_dead_letters"
        if step is None:
            rows = await self._fetch(sql + " ORDER BY failed_at, id LIMIT $1", limit, what="list dead letters")
        else:
            rows = await self._fetch(
                sql + " WHERE step = $2 ORDER BY failed_at, id LIMIT $1", limit, step, what="list dead letters"
            )
        return [_dead_letter_of(row) for row in rows]

    async def pending(self, step: str | None = None) -> int:
        if step is None:
            rows = await self._fetch("SELECT count(*) FROM motia_deliveries", what="count deliveries")
        else:
            rows = await self._fetch(
                "SELECT count(*) FROM motia_deliveries WHERE step = $1", step, what="count deliveries"
            )
        return int(rows[0][0])

    async def pending_by_step(self) -> dict[str, int]:
        rows = await self._fetch("SELECT step, count(*) FROM motia_deliveries GROUP BY step", what="count deliveries")
        return {str(step): int(count) for step, count in rows}

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        now = self._clock()
        prune = now - self._ticks_pruned >= TICK_PRUNE_INTERVAL
        if prune:
            self._ticks_pruned = now
        claimed: bool = await self._transact(
            _claim_tick, job, tick_millis(tick), hold, prune, what="claim a cron tick", events=False
        )
        return claimed

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        check_lease(name, owner)
        acquired: bool = await self._transact(
            _acquire_lease, name, owner, check_lease_ttl(ttl), what="acquire a lease", events=False
        )
        return acquired

    async def release_lease(self, name: str, owner: str) -> bool:
        check_lease(name, owner)
        released: bool = await self._transact(_release_lease, name, owner, what="release a lease", events=False)
        return released

    async def touch_steps(self, steps: Sequence[str]) -> None:
        names = check_steps(steps)
        if names:
            await self._transact(_touch_steps, names, what="touch steps", events=False)

    async def _prune_deliveries(self, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
        """``prune``'s dead letters and stale steps (``PostgresBackend.prune`` adds the streams)."""
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        if dead_letter_age is None and step_age is None:
            return PruneResult(0, 0, 0)
        result: PruneResult = await self._transact(
            _prune, dead_letter_age, step_age, what="apply retention", events=False
        )
        if step_age is not None:
            self._registered.clear()  # some subscriptions may be gone: the next dispatch registers again
        return result
