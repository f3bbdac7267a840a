"""Crash injection: a handler's writes commit, then its process "dies" before the delivery is completed.

That is the window at-least-once delivery leaves open (kill -9 between a handler's last write and the
store's acknowledgement of the delivery): the delivery stays leased to the dead worker, its lease expires,
and it runs again with ``ctx.trigger.attempt`` one higher. A handler that is not idempotent does its
side effects twice; :func:`crash_after_commit` lets a test show that it does not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from motia.runtime.app import MotiaApp
from motia.state.backends.types import Delivery
from motia.testing.clock import clock_of

__all__ = ["CrashInjector", "crash_after_commit"]


class CrashInjector:
    """Which deliveries to "crash" after their handler returned (``step``: only that step's; ``times``:
    how many, ``None`` for every one); :attr:`crashed` lists those it did, in order."""

    def __init__(self, app: MotiaApp, *, step: str | None, times: int | None) -> None:
        if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
            raise ValueError(f"times must be an int >= 1 or None, not {times!r}")
        if step is not None and step not in {s.name for s in app.steps}:
            raise ValueError(f"the app has no step {step!r}")
        self.app = app
        self.step = step
        self.times = times
        self.crashed: list[Delivery] = []
        self._lock = threading.Lock()

    def __call__(self, delivery: Delivery) -> bool:
        with self._lock:
            if self.step is not None and delivery.step != self.step:
                return False
            if self.times is not None and len(self.crashed) >= self.times:
                return False
            self.crashed.append(delivery)
        worker = self.app.delivery
        clock = clock_of(self.app)
        if clock is not None and worker is not None:
            # The dead worker's lease on it runs out then: the clock stops there to deliver it again.
            clock.wake_at(clock.now() + worker.plan.leases.get(delivery.step, worker.options.lease))
        return True


@contextlib.contextmanager
def crash_after_commit(app: MotiaApp, *, step: str | None = None, times: int | None = 1) -> Iterator[CrashInjector]:
    """Inside the block, the next ``times`` deliveries (of ``step``, if given) that ``app`` handles
    successfully are left unsettled after their handler returned, as if the process died right after the
    handler's writes committed: leased until their lease expires, then delivered again.

    Under a :class:`~motia.testing.FakeClock` driving ``app``, ``await clock.advance(lease)`` runs the
    redelivery (the clock stops where the lease ends). Raises ``RuntimeError`` for an app without a
    delivery worker (``delivery=False`` or not started) and ``ValueError`` for an unknown step.
    """
    worker = app.delivery
    if worker is None:
        raise RuntimeError("crash_after_commit needs a started app with delivery enabled")
    injector = CrashInjector(app, step=step, times=times)
    previous, worker.crash_after_commit = worker.crash_after_commit, injector
    try:
        yield injector
    finally:
        worker.crash_after_commit = previous
