"""The metrics (OpenTelemetry metrics API): handler duration and errors, delivery lag, state operation
latency, and two gauges read from the store (pending deliveries and dead letters per step).

The gauges' numbers come from the store, which a metric reader must not query on its own thread at every
collection (the store's connections live on the app's event loop, and a count may cost a scan): the app
refreshes them on its loop every :data:`STORE_GAUGE_INTERVAL` seconds (:meth:`StoreGauges.refresh`) and
a collection reads the last numbers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from motia.state.backends.base import StateBackend

__all__ = ["DEAD_LETTER_SCAN", "STORE_GAUGE_INTERVAL", "Instruments", "StoreGauges"]

logger = logging.getLogger("motia.runtime")

#: Seconds between two readings of the store for the gauges.
STORE_GAUGE_INTERVAL = 15.0
#: Dead letters read at most per reading: the gauge counts up to this many (a store holding more reports
#: this many, across steps, oldest first).
DEAD_LETTER_SCAN = 10_000


class Instruments:
    """The synchronous instruments, made once per meter."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.step_duration = meter.create_histogram(
            "motia.step.duration", unit="s", description="Duration of a handler run, per step and trigger kind"
        )
        self.step_errors = meter.create_counter(
            "motia.step.errors", unit="{run}", description="Handler runs that failed, per step and trigger kind"
        )
        self.delivery_lag = meter.create_histogram(
            "motia.delivery.lag",
            unit="s",
            description="From a delivery's commit (enqueue, dispatch of a state or stream change) to its handler start",
        )
        self.state_duration = meter.create_histogram(
            "motia.state.duration", unit="s", description="Latency of a state or stream operation, per backend and op"
        )
        #: The apps whose store the gauges report (added by an app at start, removed at shutdown).
        self.stores: list[StoreGauges] = []
        meter.create_observable_gauge(
            "motia.deliveries.pending",
            callbacks=[self._observe_pending],
            unit="{delivery}",
            description="Deliveries not yet settled (waiting or leased), per step",
        )
        meter.create_observable_gauge(
            "motia.dead_letters",
            callbacks=[self._observe_dead],
            unit="{delivery}",
            description="Dead letters kept, per step",
        )

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {"motia.step": step}) for store in self.stores for step, n in sorted(store.pending.items())
        ]

    def _observe_dead(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"motia.step": step}) for store in self.stores for step, n in sorted(store.dead.items())]


class StoreGauges:
    """One app's numbers for ``motia.deliveries.pending`` and ``motia.dead_letters`` (per step), from its last
    :meth:`refresh`; :class:`Instruments` reports every app's that is watched."""

    def __init__(self, instruments: Instruments, backend: StateBackend, steps: Sequence[str]) -> None:
        self.instruments = instruments
        instruments.stores.append(self)
        self.backend = backend
        self.steps = list(steps)
        self.pending: dict[str, int] = {}
        self.dead: dict[str, int] = {}

    async def refresh(self) -> None:
        """Read the counts from the store (on the app's loop); a failure keeps the last numbers and raises."""
        pending = await self.backend.pending_by_step()
        dead: dict[str, int] = {}
        for letter in await self.backend.dead_letters(limit=DEAD_LETTER_SCAN):
            dead[letter.step] = dead.get(letter.step, 0) + 1
        # Every step of the app is reported, with 0 when it has none, so a drained queue reads 0, not absent.
        self.pending = {step: pending.get(step, 0) for step in {*self.steps, *pending}}
        self.dead = {step: dead.get(step, 0) for step in {*self.steps, *dead}}

    def close(self) -> None:
        """Stop reporting this store."""
        if self in self.instruments.stores:
            self.instruments.stores.remove(self)
