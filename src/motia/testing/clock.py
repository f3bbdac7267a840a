"""A fake clock: time that moves only when a test says so, and runs what each move makes due.

Give it to a store as its ``clock`` (``StateManager.from_url("memory://", clock=clock)``) and let it drive
an app (:meth:`FakeClock.drive`; ``app_client(..., clock=clock)`` and the pytest plugin do both). Then
``await clock.advance(3600)`` walks the hour in order, stopping at each moment something comes due (a cron
tick, a key's expiry, a retry's backoff, a queue's ``delay_seconds``, an injected crash's lease) and, at
each stop, before going on:

1. expires the keys whose TTL has passed (their ``expired`` events are recorded, as the sweeper would);
2. runs the cron ticks that are due, each once, with the claim and lease a running app takes;
3. runs every event and delivery ready at that moment, again until none is (state and stream triggers,
   queue messages, retries whose backoff has passed, deliveries whose lease has expired).

So when ``advance`` returns, everything it made due has been handled: no sleeps, no polling. Nothing
real waits on the fake time; the app's background loops (its poll timer, lease renewal) still run on
real time and only ever do early what a stop would do anyway.
"""

from __future__ import annotations

import heapq
import time
import weakref
from datetime import UTC, datetime

from motia.runtime.app import MotiaApp
from motia.runtime.cron import CronJob, CronScheduler
from motia.runtime.queue import Message
from motia.state.backends.types import Delivery
from motia.state.manager import StateManager
from motia.steps.schedule import ScheduleExhausted, next_fire

__all__ = ["DEFAULT_START", "FakeClock", "clock_of"]

#: ``datetime`` under another name, for annotations inside :class:`FakeClock` (whose method shadows it).
_DateTime = datetime

#: Where a fake clock starts unless told: 2026-01-01T00:00:00Z, a Thursday (so a test's dates never vary).
DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)

#: The clock driving each app, for helpers that need it (``crash_after_commit`` schedules the lease's end).
_clocks: weakref.WeakKeyDictionary[MotiaApp, FakeClock] = weakref.WeakKeyDictionary()


def clock_of(app: MotiaApp) -> FakeClock | None:
    """The fake clock driving ``app``, if any."""
    return _clocks.get(app)


class _Driven:
    """One app driven by a clock: its cron jobs' next ticks, run through a scheduler that is never started."""

    def __init__(self, app: MotiaApp, now: datetime, clock: FakeClock, *, cron: bool) -> None:
        self.app = app
        self.clock = clock
        backend = app.state.backend
        jobs = app.cron_jobs() if cron else []
        self.scheduler = CronScheduler(jobs, now=clock.datetime, claim=backend.claim_tick, leases=backend)
        self.ticks: dict[str, tuple[datetime, CronJob]] = {}
        for job in jobs:
            self._plan(job, now)

    def _plan(self, job: CronJob, after: datetime) -> None:
        try:
            self.ticks[job.name] = (next_fire(after, job.expression), job)
        except ScheduleExhausted:  # a 7-field expression whose years are over: no tick left
            self.ticks.pop(job.name, None)

    def sent(self, message: Message) -> None:
        """A queue observer: a message to a step with ``delay_seconds`` comes due that much later."""
        for _, trigger in self.app.queues.subscribers.get(message.topic, []):
            if trigger.options.delay_seconds > 0:
                self.clock.wake_at(self.clock.now() + trigger.options.delay_seconds)

    def next_tick(self) -> float | None:
        return min((tick.timestamp() for tick, _ in self.ticks.values()), default=None)

    async def run_ticks(self, now: float) -> int:
        """Run the ticks due at ``now``, oldest first, each once; return how many ran."""
        ran = 0
        while True:
            due = sorted((tick, job.name) for tick, job in self.ticks.values() if tick.timestamp() <= now)
            if not due:
                return ran
            tick, name = due[0]
            job = self.ticks[name][1]
            self._plan(job, tick)
            await self.scheduler.run_tick(job, tick)
            ran += 1


class FakeClock:
    """Unix time in seconds that moves only by :meth:`set` and :meth:`advance`.

    Call it (``clock()``) or :meth:`now` for the time as a float, :meth:`datetime` for an aware UTC
    datetime. Pass it as the ``clock`` of a store, then :meth:`drive` the apps (and stores) on it.
    It starts at ``start`` (:data:`DEFAULT_START` unless given).
    """

    def __init__(self, start: float | datetime = DEFAULT_START) -> None:
        self._now = _seconds(start)
        self._apps: dict[MotiaApp, _Driven] = {}
        self._states: dict[StateManager, None] = {}
        self._wakeups: list[float] = []

    def __call__(self) -> float:
        return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self.datetime().isoformat()})"

    def now(self) -> float:
        """The time, in Unix seconds."""
        return self._now

    def datetime(self) -> datetime:
        """The time, as an aware UTC datetime."""
        return datetime.fromtimestamp(self._now, UTC)

    def set(self, when: float | _DateTime) -> None:
        """Move the time to ``when`` (Unix seconds or an aware datetime), forward or back, running nothing.

        What the move made due runs at the next :meth:`advance` (``await clock.advance(0)`` runs it now):
        a cron job's ticks in between run once each, oldest first.
        """
        self._now = _seconds(when)

    def wake_at(self, when: float) -> None:
        """Make :meth:`advance` stop at ``when`` (if it passes it) to run what is due then."""
        if when > self._now:
            heapq.heappush(self._wakeups, when)

    def drive(self, target: MotiaApp | StateManager, *, cron: bool = True) -> None:
        """Run ``target``'s due work on each move: a started app's cron ticks, state events and deliveries
        (its store should use this clock), or a store's expiries.

        An app's own cron scheduler should be off (``MotiaApp(..., cron=False)``): the clock runs its cron
        jobs instead (unless ``cron=False``), from the first tick after now.
        """
        if isinstance(target, StateManager):
            self._states[target] = None
            return
        if not target.started:
            raise RuntimeError("FakeClock.drive(app) needs a started app (await app.startup() first)")
        driven = self._apps[target] = _Driven(target, self.datetime(), self, cron=cron)
        if target.delivery is not None:
            target.delivery.retry_listeners.append(self._retry_due)
            target.delivery.rate_limiter.clock = self  # rate-limit windows on this time, as the store's
        target.queues.observers.append(driven.sent)
        _clocks[target] = self

    def release(self, target: MotiaApp | StateManager) -> None:
        """Stop driving ``target``."""
        if isinstance(target, StateManager):
            self._states.pop(target, None)
            return
        driven = self._apps.pop(target, None)
        if driven is not None and driven.sent in target.queues.observers:
            target.queues.observers.remove(driven.sent)
        if driven is not None and _clocks.get(target) is self:
            del _clocks[target]
        if target.delivery is not None and self._retry_due in target.delivery.retry_listeners:
            target.delivery.retry_listeners.remove(self._retry_due)
        if target.delivery is not None and target.delivery.rate_limiter.clock is self:
            target.delivery.rate_limiter.clock = time.time

    def _retry_due(self, delivery: Delivery, delay: float) -> None:
        self.wake_at(self._now + delay)

    async def advance(self, seconds: float = 0.0) -> None:
        """Move the time ``seconds`` forward, stopping at each moment something comes due to run it (see
        the module's docstring); return once everything due by the end has been handled.

        ``advance(0)`` runs what is due now. Raises ``ValueError`` for a negative or non-finite
        ``seconds``, and ``TimeoutError`` if the handlers of one stop are not done within 10 s (real).
        """
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < float("inf"):
            raise ValueError(f"advance() takes a finite number of seconds >= 0, not {seconds!r}")
        target = self._now + seconds
        await self._run_due()
        while (stop := await self._next_stop(target)) is not None:
            self._now = stop
            await self._run_due()
        self._now = target
        await self._run_due()

    async def _next_stop(self, target: float) -> float | None:
        """The first moment after now, and at most ``target``, at which something comes due."""
        while self._wakeups and self._wakeups[0] <= self._now:
            heapq.heappop(self._wakeups)
        candidates = [self._wakeups[0]] if self._wakeups else []
        candidates += [tick for driven in self._apps.values() if (tick := driven.next_tick()) is not None]
        for state in self._driven_states():
            expiry = await _next_expiry(state, self._now)
            if expiry is not None:
                candidates.append(expiry)
        return min((moment for moment in candidates if self._now < moment <= target), default=None)

    def _driven_states(self) -> list[StateManager]:
        """The stores driven, by themselves or as an app's, each once."""
        return list(dict.fromkeys([*self._states, *(app.state for app in self._apps)]))

    async def _run_due(self) -> None:
        """Expire, tick and deliver, again until a round does nothing: one app's work may make another's
        (two apps on one store: a write of the second triggers a step of the first)."""
        while True:
            done = 0
            for state in self._driven_states():
                done += await state.purge_expired()
            for driven in list(self._apps.values()):
                done += await driven.run_ticks(self._now)
                if driven.app.delivery is not None:
                    done += await driven.app.delivery.run_ready()
            if not done:
                return


async def _next_expiry(state: StateManager, now: float) -> float | None:
    """The earliest expiry after ``now`` of a key of ``state`` (its runtime scopes included)."""
    backend = state.backend
    soonest: float | None = None
    for scope in await backend.scopes():
        for record in await backend.items(scope, prefix=None, after=None, limit=None):
            if record.expires_at is not None and record.expires_at > now:
                soonest = record.expires_at if soonest is None else min(soonest, record.expires_at)
    return soonest


def _seconds(when: float | datetime) -> float:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(f"give the fake clock an aware datetime (with a tzinfo), not {when!r}")
        return when.timestamp()
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"the fake clock's time is Unix seconds or an aware datetime, not {when!r}")
    return float(when)
