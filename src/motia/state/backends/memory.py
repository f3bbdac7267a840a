"""In-process state: for tests and throwaway runs. Nothing survives the process, by design.

Thread- and task-safe (one lock, never held across an ``await``), so it can back the synchronous twin
and sync handlers too. Values are kept encoded, so ``get`` always returns a fresh object and the store
enforces exactly the same limits as the durable backends. Keys are kept sorted per scope, so a page of
``items`` costs the page plus a binary search. Change events and deliveries follow the same contract as
the durable backends, in memory.
"""

from __future__ import annotations

import bisect
import builtins
import heapq
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from motia.exceptions import StateClosedError
from motia.state.backends._events import error_text, state_deliveries
from motia.state.backends._writes import (
    check_age,
    check_lease,
    check_lease_ttl,
    check_limit,
    check_steps,
    check_version,
    is_live,
    orphaned_error,
    plan_restore,
    plan_set,
    plan_transaction_write,
    plan_update,
)
from motia.state.backends.base import StateBackend
from motia.state.backends.memory_operate import MemoryOperations, Pending
from motia.state.backends.memory_stats import MemoryStats
from motia.state.backends.memory_streams import MemoryStreams
from motia.state.backends.types import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Record,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.observe import current_trace
from motia.state.ops import Operation
from motia.state.values import prefix_upper_bound

#: (seq, event_type, scope, key, old, new, version, timestamp)
_Event = tuple[int, str, str, str, bytes | None, bytes | None, int, float, str | None]


class _Scope:
    __slots__ = ("records", "sorted_keys")

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.sorted_keys: list[str] = []

    def put(self, record: Record) -> None:
        if record.key not in self.records:
            bisect.insort(self.sorted_keys, record.key)
        self.records[record.key] = record

    def remove(self, key: str) -> None:
        del self.records[key]
        del self.sorted_keys[bisect.bisect_left(self.sorted_keys, key)]


class MemoryBackend(MemoryStats, MemoryStreams, MemoryOperations, StateBackend):
    """A private in-memory store; each instance (each ``memory://`` URL opened) is independent."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.url = "memory://"
        self._clock = clock
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._closed = False
        self._events_enabled = False
        self._events: list[_Event] = []
        self._event_seq = 0
        self._deliveries: dict[str, Pending] = {}  # insertion order is delivery order
        self._dead: dict[str, DeadLetter] = {}  # by id, in the order they were buried
        self._subscriptions: dict[Subscription, None] = {}  # every one registered, in order
        self._ticks: dict[tuple[str, int], float] = {}  # claimed (job, tick ms) -> when it may be forgotten
        self._tick_expiry: list[tuple[float, str, int]] = []  # a heap over the same claims, soonest first
        self._leases: dict[str, tuple[str, float]] = {}  # lease name -> (owner, expires_at)
        self._steps_seen: dict[str, float] = {}  # step -> when an app last said it serves it (touch_steps)
        self._init_streams()

    def _check_open(self) -> None:
        if self._closed:
            raise StateClosedError("the memory:// state store is closed")

    def _event(self, event_type: str, scope: str, key: str, old: bytes | None, new: bytes | None, version: int) -> None:
        if self._events_enabled:
            self._event_seq += 1
            # The writer's trace, read now: the event carries it to its deliveries (state/observe.py).
            self._events.append(
                (self._event_seq, event_type, scope, key, old, new, version, self._clock(), current_trace.get())
            )

    def _add_deliveries(self, deliveries: Sequence[NewDelivery], now: float) -> None:
        for new in deliveries:
            self._deliveries.setdefault(new.id, Pending(new, now))

    def _live(self, scope: str, key: str, now: float) -> Record | None:
        bucket = self._scopes.get(scope)
        if bucket is None:
            return None
        record = bucket.records.get(key)
        if record is None:
            return None
        if not is_live(record.expires_at, now):
            self._remove(scope, bucket, key)
            self._event("expired", scope, key, record.data, None, record.version)
            return None
        return record

    def _remove(self, scope: str, bucket: _Scope, key: str) -> None:
        bucket.remove(key)
        if not bucket.records:
            del self._scopes[scope]

    def _put(self, scope: str, record: Record, old_data: bytes | None) -> None:
        bucket = self._scopes.get(scope)
        if bucket is None:
            bucket = self._scopes[scope] = _Scope()
        bucket.put(record)
        event_type = "created" if old_data is None else "updated"
        self._event(event_type, scope, record.key, old_data, record.data, record.version)

    def _changed(self) -> None:
        """After a write, outside the lock: wake local workers if events are pending."""
        if self._events:
            self._notify_listeners()

    async def get(self, scope: str, key: str) -> Record | None:
        with self._lock:
            self._check_open()
            record = self._live(scope, key, self._clock())
        self._changed()
        return record

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        with self._lock:
            self._check_open()
            now = self._clock()
            record, result = plan_set(scope, key, self._live(scope, key, now), data, ttl, if_version, now)
            self._put(scope, record, result.old_data)
        self._changed()
        return result

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
        with self._lock:
            self._check_open()
            now = self._clock()
            current = self._live(scope, key, now)
            record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, now)
            if record is not None:
                self._put(scope, record, result.old_data)
        self._changed()
        return result

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        with self._lock:
            self._check_open()
            current = self._live(scope, key, self._clock())
            check_version(scope, key, current, if_version)
            if current is not None:
                self._remove(scope, self._scopes[scope], key)
                self._event("deleted", scope, key, current.data, None, current.version)
        self._changed()
        return None if current is None else current.data

    async def clear(self, scope: str) -> int:
        with self._lock:
            self._check_open()
            bucket = self._scopes.pop(scope, None)
            live = 0
            if bucket is not None:
                now = self._clock()
                for key in bucket.sorted_keys:
                    record = bucket.records[key]
                    expired = not is_live(record.expires_at, now)
                    live += not expired
                    self._event("expired" if expired else "deleted", scope, key, record.data, None, record.version)
        self._changed()
        return live

    async def values(self, scope: str) -> list[bytes]:
        return [record.data for record in await self.items(scope, prefix=None, after=None, limit=None)]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        with self._lock:
            self._check_open()
            bucket = self._scopes.get(scope)
            if bucket is None or limit == 0:
                return []
            now = self._clock()
            keys = bucket.sorted_keys
            start = bisect.bisect_right(keys, after) if after is not None else 0
            if prefix:
                start = max(start, bisect.bisect_left(keys, prefix))
                upper = prefix_upper_bound(prefix)
                stop = bisect.bisect_left(keys, upper) if upper is not None else len(keys)
            else:
                stop = len(keys)
            page: list[Record] = []
            for position in range(start, stop):
                record = bucket.records[keys[position]]
                if is_live(record.expires_at, now):
                    page.append(record)
                    if limit is not None and len(page) >= limit:
                        break
            return page

    async def count(self, scope: str) -> int:
        with self._lock:
            self._check_open()
            bucket = self._scopes.get(scope)
            if bucket is None:
                return 0
            now = self._clock()
            return sum(1 for record in bucket.records.values() if is_live(record.expires_at, now))

    async def scopes(self) -> list[str]:
        with self._lock:
            self._check_open()
            now = self._clock()
            return sorted(
                name
                for name, bucket in self._scopes.items()
                if any(is_live(record.expires_at, now) for record in bucket.records.values())
            )

    async def purge_expired(self) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            removed = 0
            for name, bucket in list(self._scopes.items()):
                for key in [k for k, r in bucket.records.items() if not is_live(r.expires_at, now)]:
                    record = bucket.records[key]
                    self._remove(name, bucket, key)
                    self._event("expired", name, key, record.data, None, record.version)
                    removed += 1
        self._changed()
        return removed

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        with self._lock:
            self._check_open()
            now = self._clock()
            for (scope, key), version in expected.items():
                check_version(scope, key, self._live(scope, key, now), version)
            for write in writes:
                current = self._live(write.scope, write.key, now)
                record = plan_transaction_write(current, write, now)
                if record is not None:
                    self._put(write.scope, record, None if current is None else current.data)
                elif current is not None:
                    self._remove(write.scope, self._scopes[write.scope], write.key)
                    self._event("deleted", write.scope, write.key, current.data, None, current.version)
        self._changed()

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        with self._lock:
            self._check_open()
            current = self._live(scope, key, self._clock())
            if current is not None and not replace:
                return False
            record = plan_restore(current, key, data, version, expires_at)
            self._put(scope, record, None if current is None else current.data)
        self._changed()
        return True

    # -- delivery ---------------------------------------------------------------------------------

    async def enable_events(self) -> None:
        with self._lock:
            self._check_open()
            self._events_enabled = True

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        with self._lock:
            self._check_open()
            self._subscriptions.update(dict.fromkeys(subscriptions))
            events, self._events = self._events[:limit], self._events[limit:]
            now = self._clock()
            for event in events:
                for new in state_deliveries(list(self._subscriptions), *event):
                    self._deliveries.setdefault(new.id, Pending(new, now))
        if events:
            self._notify_listeners()
        return len(events)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            added = 0
            for new in deliveries:
                if new.id not in self._deliveries:
                    self._deliveries[new.id] = Pending(new, now)
                    added += 1
        if added:
            self._notify_listeners()
        return added

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        with self._lock:
            self._check_open()
            now = self._clock()
            wanted = set(steps)
            ahead: Counter[tuple[str, str]] = Counter()  # (step, order_key) -> older unsettled deliveries
            claimed: list[Delivery] = []
            for pending in self._deliveries.values():
                if len(claimed) >= limit:
                    break
                new = pending.new
                if new.step not in wanted:
                    continue
                if new.order_key is not None:
                    older = ahead[(new.step, new.order_key)]
                    ahead[(new.step, new.order_key)] = older + 1
                    if older >= new.order_slots:
                        continue
                if pending.available_at > now or (pending.owner is not None and pending.lease_until > now):
                    continue
                pending.owner, pending.lease_until = owner, now + lease
                pending.attempts += 1
                claimed.append(Delivery(new.id, new.step, new.kind, new.payload, pending.attempts, pending.created_at))
            return claimed

    async def next_due(self, steps: Sequence[str]) -> float | None:
        with self._lock:
            self._check_open()
            now = self._clock()
            wanted = set(steps)
            times = [
                max(pending.available_at, pending.lease_until if pending.owner is not None else 0.0)
                for pending in self._deliveries.values()
                if pending.new.step in wanted
            ]
            later = [due for due in times if due > now]
            return min(later) - now if later else None

    def _held(self, delivery_id: str, owner: str) -> Pending | None:
        pending = self._deliveries.get(delivery_id)
        if pending is None or pending.owner != owner:
            return None
        return pending

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        with self._lock:
            self._check_open()
            now = self._clock()
            for delivery_id in ids:
                pending = self._held(delivery_id, owner)
                if pending is not None:
                    pending.lease_until = now + lease

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        with self._lock:
            self._check_open()
            if self._held(delivery_id, owner) is None:
                return False
            del self._deliveries[delivery_id]
        self._notify_listeners()  # a later delivery of the same key may be ready now
        return True

    async def complete_many(self, delivery_ids: Sequence[str], *, owner: str) -> builtins.set[str]:
        with self._lock:
            self._check_open()
            done = {delivery_id for delivery_id in delivery_ids if self._held(delivery_id, owner) is not None}
            for delivery_id in done:
                del self._deliveries[delivery_id]
        if done:
            self._notify_listeners()  # later deliveries of the same keys may be ready now
        return done

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        with self._lock:
            self._check_open()
            pending = self._held(delivery_id, owner)
            if pending is None:
                return False
            pending.owner, pending.lease_until = None, 0.0
            pending.available_at = self._clock() + delay
            pending.last_error = error_text(error)
            if pending.first_error is None:
                pending.first_error = pending.last_error
            return True

    async def postpone(self, delivery_id: str, *, owner: str, delay: float) -> bool:
        with self._lock:
            self._check_open()
            pending = self._held(delivery_id, owner)
            if pending is None:
                return False
            pending.owner, pending.lease_until = None, 0.0
            pending.available_at = self._clock() + delay
            pending.attempts = max(pending.attempts - 1, 0)
            return True

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        with self._lock:
            self._check_open()
            pending = self._held(delivery_id, owner)
            if pending is None:
                return False
            del self._deliveries[delivery_id]
            self._bury(pending, error_text(error), self._clock())
        self._notify_listeners()
        return True

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        with self._lock:
            self._check_open()
            return [letter for letter in self._dead.values() if step is None or letter.step == step][:limit]

    async def add_dead_letters(self, deliveries: Sequence[NewDelivery], *, error: str) -> int:
        text = error_text(error)
        with self._lock:
            self._check_open()
            now = self._clock()
            added = 0
            for new in deliveries:
                if new.id in self._dead or new.id in self._deliveries:
                    continue
                self._dead[new.id] = DeadLetter(new.id, new.step, new.kind, new.payload, 0, text, now, now, text)
                added += 1
            return added

    async def pending_by_step(self) -> dict[str, int]:
        with self._lock:
            self._check_open()
            counts: dict[str, int] = {}
            for pending in self._deliveries.values():
                counts[pending.new.step] = counts.get(pending.new.step, 0) + 1
            return counts

    async def pending(self, step: str | None = None) -> int:
        with self._lock:
            self._check_open()
            return sum(1 for pending in self._deliveries.values() if step is None or pending.new.step == step)

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        with self._lock:
            self._check_open()
            now = self._clock()
            # Each claim has exactly one heap entry, so popping one forgets exactly that claim.
            while self._tick_expiry and self._tick_expiry[0][0] <= now:
                _, old_job, old_tick = heapq.heappop(self._tick_expiry)
                del self._ticks[old_job, old_tick]
            claim = (job, tick_millis(tick))
            if claim in self._ticks:
                return False
            self._ticks[claim] = now + hold
            heapq.heappush(self._tick_expiry, (now + hold, *claim))
            return True

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        check_lease(name, owner)
        ttl = check_lease_ttl(ttl)
        with self._lock:
            self._check_open()
            now = self._clock()
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[name] = (owner, now + ttl)
            return True

    async def release_lease(self, name: str, owner: str) -> bool:
        check_lease(name, owner)
        with self._lock:
            self._check_open()
            held = self._leases.get(name)
            if held is None or held[0] != owner or held[1] <= self._clock():
                return False
            del self._leases[name]
            return True

    async def touch_steps(self, steps: Sequence[str]) -> None:
        names = check_steps(steps)
        with self._lock:
            self._check_open()
            now = self._clock()
            for step in names:
                self._steps_seen[step] = max(now, self._steps_seen.get(step, now))

    async def prune(
        self,
        *,
        dead_letter_age: float | None,
        step_age: float | None,
        stream_age: float | None = None,
        dead_letter_limit: int | None = None,
    ) -> PruneResult:
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        stream_age = check_age("stream_age", stream_age)
        dead_letter_limit = check_limit("dead_letter_limit", dead_letter_limit)
        with self._lock:
            self._check_open()
            now = self._clock()
            removed = forgotten = orphaned = 0
            changes = groups = 0
            if stream_age is not None:
                changes, groups = self._prune_streams(now - stream_age)
            if dead_letter_age is not None:
                cut = now - dead_letter_age
                kept = {letter.id: letter for letter in self._dead.values() if letter.failed_at >= cut}
                removed = len(self._dead) - len(kept)
                self._dead = kept
            if step_age is not None:
                cut = now - step_age
                for step, seen_at in [(step, seen) for step, seen in self._steps_seen.items() if seen < cut]:
                    moved, leased = self._orphan(step, orphaned_error(step, seen_at), now)
                    orphaned += moved
                    for subscription in [sub for sub in self._subscriptions if sub.step == step]:
                        del self._subscriptions[subscription]
                    self._forget_stream_subscriptions(step)
                    if not leased:  # else kept (still stale) until its leased deliveries are settled
                        del self._steps_seen[step]
                        forgotten += 1
            if dead_letter_limit is not None and len(self._dead) > dead_letter_limit:
                oldest = sorted(self._dead.values(), key=lambda letter: (letter.failed_at, letter.id))
                for letter in oldest[: len(oldest) - dead_letter_limit]:  # the order dead_letters lists
                    del self._dead[letter.id]
                removed += len(oldest) - dead_letter_limit
        if orphaned:
            self._notify_listeners()
        return PruneResult(removed, forgotten, orphaned, changes, groups)

    def _bury(self, pending: Pending, error: str, now: float) -> None:
        """Make ``pending`` (already removed from the deliveries) a dead letter, replacing one of its id."""
        new = pending.new
        self._dead.pop(new.id, None)  # re-inserted last: the dict stays in burial order
        self._dead[new.id] = DeadLetter(
            new.id,
            new.step,
            new.kind,
            new.payload,
            pending.attempts,
            error,
            pending.created_at,
            now,
            pending.first_error or error,
        )

    def _orphan(self, step: str, error: str, now: float) -> tuple[int, int]:
        """Move the waiting deliveries of ``step`` to the dead letters; return (moved, still leased)."""
        moved = leased = 0
        for delivery_id, pending in list(self._deliveries.items()):
            if pending.new.step != step:
                continue
            if pending.owner is not None and pending.lease_until > now:
                leased += 1
                continue
            del self._deliveries[delivery_id]
            self._bury(pending, error, now)
            moved += 1
        return moved, leased

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._scopes.clear()
            self._close_streams()
            self._ticks.clear()
            self._tick_expiry.clear()
            self._leases.clear()
