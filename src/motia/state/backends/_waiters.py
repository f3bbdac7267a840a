"""Waiting for a commit from any thread: the tasks of :meth:`StreamStore.stream_tail` on every event loop."""

from __future__ import annotations

import asyncio
import threading

#: One registered waiter: its loop and the future woken on the next commit.
Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class CommitWaiters:
    """Tasks waiting (on any loop) for the next commit; :meth:`wake` may be called from any thread.

    Register *before* looking for changes and wait after: a commit between the look and the wait then
    still wakes the waiter, so no change waits for the timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[Waiter] = set()

    def register(self) -> Waiter:
        """Register a waiter of the running loop."""
        loop = asyncio.get_running_loop()
        waiter = (loop, loop.create_future())
        with self._lock:
            self._waiters.add(waiter)
        return waiter

    def discard(self, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.discard(waiter)

    async def wait(self, waiter: Waiter, timeout: float) -> bool:
        """Wait until :meth:`wake` or ``timeout`` seconds; ``True`` when woken. Unregisters the waiter."""
        try:
            if timeout <= 0:
                return waiter[1].done()
            # asyncio.wait, not wait_for: on Python 3.11 wait_for can swallow a cancellation that arrives
            # together with the wake-up, and a task cancelling its tail would then wait forever.
            done, _ = await asyncio.wait({waiter[1]}, timeout=timeout)
        finally:
            self.discard(waiter)
        return bool(done)

    def wake(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_settle, future)
            except RuntimeError:  # that loop is closed: nobody is waiting there any more
                pass


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
