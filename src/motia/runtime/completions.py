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

While the worker's claim loop runs on a store that completes and claims in one transaction
(``backend.completes_with_claim``: :attr:`Completions.collected`), it takes the waiting completions into its
next claim instead (:meth:`Completions.claim`): one store call and, on SQLite, one transaction for both
(``complete_and_claim``, issue 15), since a returned handler wakes the claim loop anyway. Whatever that claim
leaves waiting (no claim was made: no free slot, every step paused) goes to a flush as above.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from motia.runtime.context import FlowContext, StepLogger

if TYPE_CHECKING:
    from motia.state.backends.base import StateBackend
    from motia.state.backends.types import Delivery

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
        #: The claim loop runs and will take the waiting completions into its next claim: no flush is started
        #: for them (the worker sets it; a returned handler always wakes the claim loop).
        self.collected = False
        #: Set while no completion taken by :meth:`claim` is in the store.
        self._landed = asyncio.Event()
        self._landed.set()

    def add(self, delivery_id: str, step: str, run: FlowContext | StepLogger) -> None:
        """Complete ``delivery_id`` (of ``step``) with the claim loop's next claim, or else the next flush; the
        ``run``'s logger (or ``run``, a logger) hears if its lease had expired. The worker hands the ctx: a run
        that never logs never makes a logger."""
        self._waiting.append((delivery_id, run))
        self.settling[delivery_id] = step
        if not self.collected and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="motia-delivery-complete")

    @property
    def idle(self) -> bool:
        """No completion is waiting or being written."""
        return not self._waiting and self._landed.is_set() and (self._flusher is None or self._flusher.done())

    def flush(self) -> None:
        """Write the waiting completions now, in a flush of their own (the claim loop made no claim to take them)."""
        if self._waiting and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.create_task(self._flush(), name="motia-delivery-complete")

    async def wait(self) -> None:
        """Until every completion added so far is written (or its failure logged)."""
        while not self.idle:
            if not self._landed.is_set():  # the claim loop's call is in the store
                await self._landed.wait()
                continue
            if self._flusher is None or self._flusher.done():  # a flusher cancelled with work left: restart it
                self._flusher = asyncio.create_task(self._flush(), name="motia-delivery-complete")
            await asyncio.gather(self._flusher, return_exceptions=True)

    async def claim(self, steps: Sequence[str], limit: int, lease: float) -> list[Delivery]:
        """``backend.claim`` for the worker, completing the waiting deliveries in the same store call.

        Raises what the store raised: then nothing was claimed, and the completions are logged as failed
        (their leases expire and they run again, as after a failed flush).
        """
        batch = self._waiting
        # nothing to take, completions not collected (written on their own), or a taken batch still in the store
        if not batch or not self.collected or not self._landed.is_set():
            return await self.backend.claim(steps, owner=self.owner, limit=limit, lease=lease)
        self._waiting = []
        ids = [delivery_id for delivery_id, _ in batch]
        self._landed.clear()
        try:
            done, claimed = await self.backend.complete_and_claim(
                ids, owner=self.owner, steps=steps, limit=limit, lease=lease
            )
        except asyncio.CancelledError:
            # Written or not, flush them (one written already comes back as no longer held, and is logged so).
            self._waiting[:0] = batch
            self.flush()
            raise
        except Exception:
            self._unsettle(ids)
            self._failed(batch)
            raise
        finally:
            self._landed.set()
        self._unsettle(ids)
        self._settled(batch, ids, done)
        return claimed

    async def _flush(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            ids = [delivery_id for delivery_id, _ in batch]
            try:
                done = await self.backend.complete_many(ids, owner=self.owner)
            except Exception:  # their leases expire and they run again; the next batch is tried all the same
                self._failed(batch)
                continue
            finally:  # written, failed or cancelled: no longer renewed (a lease left to lapse brings it back)
                self._unsettle(ids)
            self._settled(batch, ids, done)

    def _unsettle(self, ids: list[str]) -> None:
        settling = self.settling
        for delivery_id in ids:
            settling.pop(delivery_id, None)

    def _failed(self, batch: list[tuple[str, FlowContext | StepLogger]]) -> None:
        """Log a batch whose completion the store refused (called while handling the store's exception)."""
        logger.exception(
            "delivery: completing %d deliver%s failed (%s); each runs again once its lease expires",
            len(batch),
            "y" if len(batch) == 1 else "ies",
            ", ".join(delivery_id for delivery_id, _ in batch[:5]) + (", ..." if len(batch) > 5 else ""),
        )

    def _settled(self, batch: list[tuple[str, FlowContext | StepLogger]], ids: list[str], done: set[str]) -> None:
        """A delivery of ``batch`` whose lease had expired (not in ``done``) is logged on its run's logger."""
        if len(done) == len(ids):  # all completed (``done`` holds ids of this batch only): nothing to tell
            return
        for delivery_id, run in batch:
            if delivery_id not in done:
                (run.logger if isinstance(run, FlowContext) else run).warning(
                    "handled, but the lease had expired meanwhile: another worker may run it again",
                    {"delivery": delivery_id},
                )
