"""Cron: a pure ``next_fire`` function and the scheduler loop that uses it.

Expressions are standard 5-field (``minute hour day month weekday``) or 6-field with the seconds
first (``second minute hour day month weekday``), always in UTC. Upstream Motia rejects 5-field
expressions; we accept both (SPEC section 9). ``@hourly``-style aliases work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime

from croniter import CroniterError, croniter

from motia.exceptions import ConfigError

__all__ = ["CronScheduler", "CronJob", "next_fire", "validate_expression"]

logger = logging.getLogger("motia.cron")

_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


def validate_expression(expression: str) -> str:
    """Return the expression stripped, or raise ``ConfigError`` saying what is wrong with it.

    Checked when a step is declared, so a bad expression stops start-up instead of never firing.
    """
    if not isinstance(expression, str):
        raise ConfigError(f"cron expression must be a string, not {type(expression).__name__}")
    expr = " ".join(expression.split())
    if expr.lower() in _ALIASES:
        return expr.lower()
    fields = expr.split(" ") if expr else []
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"invalid cron expression {expression!r}: expected 5 fields (minute hour day month weekday) "
            f"or 6 fields (second minute hour day month weekday), got {len(fields)}"
        )
    try:
        croniter(expr, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=len(fields) == 6).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ConfigError(f"invalid cron expression {expression!r}: {exc}") from None
    return expr


def next_fire(previous: datetime, expression: str) -> datetime:
    """The first time strictly after ``previous`` at which ``expression`` fires, as an aware UTC datetime.

    Pure: no clock, no I/O. A naive ``previous`` is taken to be UTC.
    """
    expr = validate_expression(expression)
    start = previous.replace(tzinfo=UTC) if previous.tzinfo is None else previous.astimezone(UTC)
    six_fields = not expr.startswith("@") and len(expr.split(" ")) == 6
    result: datetime = croniter(expr, start, second_at_beginning=six_fields).get_next(datetime)
    return result.astimezone(UTC)


class CronJob:
    """One cron trigger of one step: what to run and when.

    ``run(scheduled_at)`` is awaited for each tick; the scheduler never starts it while the previous
    run of the same job is still going.
    """

    def __init__(self, name: str, expression: str, run: Callable[[datetime], Coroutine[object, object, None]]) -> None:
        self.name = name
        self.expression = validate_expression(expression)
        self.run = run

    def __repr__(self) -> str:
        return f"CronJob(name={self.name!r}, expression={self.expression!r})"


class CronScheduler:
    """Runs each job at its ticks, without overlap, until ``stop()``.

    The first run of a job is at its first tick after ``start()``. Missed ticks (the process was busy
    or the clock jumped) are skipped, not replayed. ``now`` and ``sleep`` are injectable for tests (a fake
    clock).
    """

    def __init__(
        self,
        jobs: list[CronJob],
        *,
        now: Callable[[], datetime] | None = None,
        sleep: Callable[[float], Coroutine[object, object, None]] | None = None,
    ) -> None:
        self.jobs = jobs
        self._now = now or (lambda: datetime.now(UTC))
        self._sleep = sleep or asyncio.sleep
        self._loops: list[asyncio.Task[None]] = []
        self._runs: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        for job in self.jobs:
            self._loops.append(asyncio.create_task(self._loop(job), name=f"motia-cron:{job.name}"))

    async def _loop(self, job: CronJob) -> None:
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
                self._runs[job.name] = asyncio.create_task(job.run(tick), name=f"motia-cron-run:{job.name}")
            tick = next_fire(max(tick, self._now()), job.expression)

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
