"""Completing the deliveries whose handlers returned, many per store call.

Like the store's group commit: the first handler to return starts a flush on the next loop iteration,
and the handlers that return before it runs (or while it is in the store) join it, so a busy trigger
pays one ``complete_many`` per burst instead of one write per delivery.

A handler's run does not wait for its completion (issue 15): its slot is free, and the worker may claim
again, as soon as the handler returned; the completion rides the next flush. Nothing acknowledged is lost
by that: until the store has completed it, the delivery stays leased, and a process that dies meanwhile
lets the lease expire, after which the delivery runs again (at least once, as before). Until its completion
is written, the worker goes on renewing its lease (:attr:`Completions.settling`), as it did while the run
waited, so a slow store does not hand it to another worker meanwhile. A delivery whose lease had already
expired is logged on the run's own logger, as the run would have logged it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from motia.runtime.context import FlowContext, StepLogger

if TYPE_CHECKING:
    from motia.state.backends.base import StateBackend

__all__ = ["Completions"]

logger = logging.getLogger("motia.runtime")


class Completions:
    """The completions waiting to be written for ``owner``'s leases on ``backend``."""

    def __init__(self, backend: StateBackend, owner: str) -> None:
        self.backend = backend
        self.owner = owner
        self._waiting: list[tuple[str, FlowContext | StepLogger]] = []
        #: The step of each delivery whose completion is not written yet (its lease is still renewed).
        self.settling: dict[str, str] = {}
        self._flusher: asyncio.Task[None] | None = None

    def add(self, delivery_id: str, step: str, run: FlowContext | StepLogger) -> None:
        """Complete ``delivery_id`` (of ``step``) with the next flush; the ``run``'s logger (or ``run``, a logger)
        hears if its lease had expired. The worker hands the ctx: a run that never logs never makes a logger."""
        self._waiting.append((delivery_id, run))
        self.settling[delivery_id] = step
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="motia-delivery-complete")

    @property
    def idle(self) -> bool:
        """No completion is waiting or being written."""
        return not self._waiting and (self._flusher is None or self._flusher.done())

    async def wait(self) -> None:
        """Until every completion added so far is written (or its failure logged)."""
        while not self.idle:
            if self._flusher is None or self._flusher.done():  # a flusher cancelled with work left: restart it
                self._flusher = asyncio.create_task(self._flush(), name="motia-delivery-complete")
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            ids = [delivery_id for delivery_id, _ in batch]
            try:
                done = await self.backend.complete_many(ids, owner=self.owner)
            except Exception:  # their leases expire and they run again; the next batch is tried all the same
                logger.exception(
                    "delivery: completing %d deliver%s failed (%s); each runs again once its lease expires",
                    len(batch),
                    "y" if len(batch) == 1 else "ies",
                    ", ".join(delivery_id for delivery_id, _ in batch[:5]) + (", ..." if len(batch) > 5 else ""),
                )
                continue
            finally:  # written, failed or cancelled: no longer renewed (a lease left to lapse brings it back)
                settling = self.settling
                for delivery_id in ids:
                    settling.pop(delivery_id, None)
            if len(done) == len(ids):  # all completed (``done`` holds ids of this batch only): nothing to tell
                continue
            for delivery_id, run in batch:
                if delivery_id not in done:
                    (run.logger if isinstance(run, FlowContext) else run).warning(
                        "handled, but the lease had expired meanwhile: another worker may run it again",
                        {"delivery": delivery_id},
                    )
