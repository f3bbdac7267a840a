"""Cron: the scheduler loop that runs each cron job at its ticks.

Expressions and the pure ``next_fire`` function are step declarations: they live in
:mod:`motia.steps.schedule` and are re-exported here (``from motia.runtime.cron import next_fire``).

Every instance of an app schedules every tick; with a ``claim`` (the state backend's ``claim_tick``)
only the instance whose claim wins runs it, so instances sharing a store run each tick once. With
``leases`` (the state backend's named leases) a run holds a lease on its job in the store, renewed while
it runs: a tick won while another instance still runs the job is skipped, so runs never overlap across
instances either (issue 11, #8).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Protocol

from motia.steps.schedule import ScheduleExhausted, next_fire, validate_expression

__all__ = [
    "CLAIM_HOLD",
    "RUN_LEASE",
    "CronJob",
    "CronScheduler",
    "JobLeases",
    "TickClaim",
    "next_fire",
    "validate_expression",
]

logger = logging.getLogger("motia.cron")

#: How long (seconds) a claimed tick is remembered: far longer than clock skew between instances, so a
#: late instance still finds the claim, and short enough to keep a per-second job's claims few.
CLAIM_HOLD = 3600.0

#: How long (seconds) a run's lease on its job lasts unrenewed; renewed every third of it while the run
#: goes on. If the instance running it dies, other instances start the job again after at most this long.
RUN_LEASE = 30.0

#: Longest pause (seconds) after an unexpected scheduling error before the schedule resumes.
MAX_ERROR_DELAY = 5.0


class TickClaim(Protocol):
    """``StateBackend.claim_tick``: ``True`` for exactly one caller per ``(job, tick)`` across processes."""

    def __call__(self, job: str, tick: float, *, hold: float) -> Awaitable[bool]: ...


class JobLeases(Protocol):
    """The state backend's named leases (``acquire_lease``/``release_lease``, see ``StateBackend``)."""

    def acquire_lease(self, name: str, owner: str, *, ttl: float) -> Awaitable[bool]: ...

    def release_lease(self, name: str, owner: str) -> Awaitable[bool]: ...


class CronJob:
    """One cron trigger of one step: what to run and when.

    ``run(scheduled_at)`` is awaited for each tick; the scheduler never starts it while the previous
    run of the same job is still going. ``key`` names the job in tick claims, the same in every
    instance of the app (default: ``name``).
    """

    def __init__(
        self,
        name: str,
        expression: str,
        run: Callable[[datetime], Coroutine[object, object, None]],
        *,
        key: str | None = None,
    ) -> None:
        self.name = name
        self.expression = validate_expression(expression)
        self.run = run
        self.key = name if key is None else key

    def __repr__(self) -> str:
        return f"CronJob(name={self.name!r}, expression={self.expression!r})"


class CronScheduler:
    """Runs each job at its ticks, without overlap, until ``stop()``.

    The first run of a job is at its first tick after ``start()``. Missed ticks (the process was busy
    or the clock jumped) are skipped, not replayed. ``now`` and ``sleep`` are injectable for tests (a fake
    clock).

    With ``claim``, a tick runs only if ``claim(job.key, tick, hold=claim_hold)`` returns ``True``: other
    instances sharing the store run the ticks they win. A claim that fails (the store is unreachable)
    skips the tick, logged: running it could run it twice.

    With ``leases``, the instance that won a tick also takes the lease ``cron:<job.key>`` (``run_lease``
    seconds, renewed every third of it until the run ends, then released): a tick won while another
    instance holds it is skipped and logged, like a tick that comes while this instance still runs the
    job. A lease that cannot be taken (the store failed) skips the tick too.
    """

    def __init__(
        self,
        jobs: list[CronJob],
        *,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Coroutine[object, object, None]] | None = None,
        claim: TickClaim | None = None,
        claim_hold: float = CLAIM_HOLD,
        leases: JobLeases | None = None,
        run_lease: float = RUN_LEASE,
    ) -> None:
        self.jobs = jobs
        self._claim = claim
        self._claim_hold = claim_hold
        self._leases = leases
        self._run_lease = run_lease
        #: Names this scheduler in leases: unique per process and scheduler.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._now = now or (lambda: datetime.now(UTC))
        self._sleep = sleep or asyncio.sleep
        self._loops: list[asyncio.Task[None]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        for job in self.jobs:
            self._loops.append(asyncio.create_task(self._loop(job), name=f"motia-cron:{job.name}"))

    async def _loop(self, job: CronJob) -> None:
        """Schedule ``job`` tick after tick. An unexpected error is logged and the schedule resumes after a
        bounded pause from the next tick: this loop never dies while the app runs (issue 11, #4), unless the
        expression has no tick left (a 7-field expression whose years are over)."""
        failures = 0
        while True:
            try:
                await self._schedule(job)
            except ScheduleExhausted:
                logger.info("cron %s: %s has no tick left; not scheduled any more", job.name, job.expression)
                return
            except Exception:
                failures += 1
                delay = min(0.5 * 2 ** min(failures, 10), MAX_ERROR_DELAY)
                logger.exception("cron %s: scheduling failed; resuming in %.1f s", job.name, delay)
                await self._sleep(delay)

    async def _schedule(self, job: CronJob) -> None:
        tick = next_fire(self._now(), job.expression)
        while True:
            # Sleep on the monotonic clock, then re-check the wall clock: sleep may end early or late.
            delay = (tick - self._now()).total_seconds()
            while delay > 0:
                await self._sleep(delay)
                delay = (tick - self._now()).total_seconds()
            running = self._runs.get(job.name)
            if running is not None and not running.done():
                logger.warning("cron %s: tick %s skipped, the previous run is still going", job.name, tick.isoformat())
            else:
                self._runs[job.name] = asyncio.create_task(self.run_tick(job, tick), name=f"motia-cron-run:{job.name}")
            tick = next_fire(max(tick, self._now()), job.expression)

    async def run_tick(self, job: CronJob, tick: datetime) -> None:
        """Claim the tick, take the job's lease, run it, release the lease.

        The schedule calls it inside the run's task, so a slow store delays this run, never the schedule.
        A scheduler driven by hand (``motia.testing``'s fake clock, which never calls :meth:`start`) calls
        it for each tick it makes due: the same claim and lease as a running app's.
        """
        if self._claim is not None:
            try:
                won = await self._claim(job.key, tick.timestamp(), hold=self._claim_hold)
            except Exception:
                logger.exception("cron %s: tick %s skipped, it could not be claimed", job.name, tick.isoformat())
                return
            if not won:
                logger.debug("cron %s: tick %s was claimed by another instance", job.name, tick.isoformat())
                return
        if self._leases is None:
            await self._run_job(job, tick)
            return
        name = f"cron:{job.key}"
        try:
            held = await self._leases.acquire_lease(name, self.owner, ttl=self._run_lease)
        except Exception:
            logger.exception("cron %s: tick %s skipped, the job's lease could not be taken", job.name, tick.isoformat())
            return
        if not held:
            logger.warning(
                "cron %s: tick %s skipped, the previous run is still going on another instance",
                job.name,
                tick.isoformat(),
            )
            return
        renewing = asyncio.create_task(self._renew(job, name), name=f"motia-cron-lease:{job.name}")
        try:
            await self._run_job(job, tick)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            try:
                await self._leases.release_lease(name, self.owner)
            except Exception:  # it expires on its own after run_lease seconds
                logger.exception("cron %s: releasing the job's lease failed", job.name)

    async def _run_job(self, job: CronJob, tick: datetime) -> None:
        try:
            await job.run(tick)
        except asyncio.CancelledError:
            raise
        except BaseException:  # KeyboardInterrupt, SystemExit... from a job: that run fails, the schedule goes on
            logger.exception("cron %s: the run of tick %s failed", job.name, tick.isoformat())

    async def _renew(self, job: CronJob, name: str) -> None:
        """Renew the run's lease every third of ``run_lease`` until cancelled; failures are logged, never fatal."""
        assert self._leases is not None
        while True:
            await asyncio.sleep(self._run_lease / 3)
            try:
                if not await self._leases.acquire_lease(name, self.owner, ttl=self._run_lease):
                    logger.warning(
                        "cron %s: the run's lease lapsed and another instance took it: the job may run twice now",
                        job.name,
                    )
            except Exception:
                logger.exception("cron %s: renewing the job's lease failed; trying again", job.name)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop scheduling, let runs in progress finish within ``timeout`` seconds, then cancel them."""
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        running = [t for t in self._runs.values() if not t.done()]
        if running:
            logger.info("waiting for %d cron run(s) to finish", len(running))
            _, pending = await asyncio.wait(running, timeout=timeout)
            for task in pending:
                logger.error("cron run %s cancelled: still running after %.1fs", task.get_name(), timeout)
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._runs.clear()
