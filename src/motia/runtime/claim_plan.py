"""``ClaimPlan``: which claims the delivery worker makes, given its steps' leases and concurrency limits.

A queue trigger's ``visibility_timeout`` sets the lease of its step's deliveries, and its ``concurrency``
bounds how many of the step's handlers run at once in this process (:mod:`motia.steps.queue_options`); a
step with a ``rate_limit`` is claimed alone, so that a full step-wide limit pauses it alone
(:mod:`motia.runtime.flow_control`).
The store leases per call (one lease, one limit), so the worker claims in *units*: the steps without a
limit of their own, one claim per distinct lease (usually one), and each limited step alone, for no more
than it has room for, so that nothing is claimed that cannot start at once (it would sit leased).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from motia.steps.triggers import QueueTrigger

if TYPE_CHECKING:
    from motia.steps.definition import Step

__all__ = ["ClaimPlan", "ClaimUnit"]


@dataclass(frozen=True, slots=True)
class ClaimUnit:
    """One claim: ``steps`` leased for ``lease`` seconds; ``limit`` is the most any claim of it may take
    (``None``: only the worker's free slots bound it)."""

    steps: tuple[str, ...]
    lease: float
    limit: int | None = None


class ClaimPlan:
    """The claim units of ``steps``, whose deliveries are leased for ``default_lease`` seconds unless their
    queue triggers say otherwise.

    A step with several queue triggers takes the longest ``visibility_timeout`` and the smallest
    ``concurrency`` among them; both apply to every delivery of the step (its state and stream triggers'
    too, since the store leases by step).
    """

    def __init__(self, steps: Iterable[Step], default_lease: float) -> None:
        self.leases: dict[str, float] = {}
        self.limits: dict[str, int] = {}
        #: Steps with a rate limit: claimed alone, so that a full step-wide limit can pause just them.
        self.rate_limited: set[str] = set()
        #: Steps of which several deliveries of one key may run at once (a keyed concurrency limit above 1): their
        #: deliveries must start in claim order, so each gets a task of its own
        #: (:func:`~motia.runtime.handler_tasks.start_runs`, ``shared=False``).
        self.several_per_key: set[str] = set()
        for step in steps:
            options = [t.options for t in step.triggers if isinstance(t, QueueTrigger)]
            timeouts = [o.visibility_timeout for o in options if o.visibility_timeout is not None]
            self.leases[step.name] = max(timeouts) if timeouts else default_lease
            limits = [o.concurrency for o in options if o.concurrency is not None]
            if limits:
                self.limits[step.name] = min(limits)
            if any(o.rate_limit is not None for o in options):
                self.rate_limited.add(step.name)
            if any(o.key_concurrency is not None and o.key_concurrency.limit > 1 for o in options):
                self.several_per_key.add(step.name)
        by_lease: dict[float, list[str]] = {}
        for name, lease in self.leases.items():
            if name not in self.limits and name not in self.rate_limited:
                by_lease.setdefault(lease, []).append(name)
        self.units = [ClaimUnit(tuple(names), lease) for lease, names in by_lease.items()]
        self.units += [ClaimUnit((name,), self.leases[name], self.limits.get(name)) for name in self.solo()]
        self._turn = 0

    def solo(self) -> list[str]:
        """The steps claimed alone (a concurrency or a rate limit), in declaration order."""
        return [name for name in self.leases if name in self.limits or name in self.rate_limited]

    @property
    def renew_period(self) -> float:
        """How often to renew leases: a third of the shortest one, so none lapses between renewals."""
        return min(self.leases.values(), default=30.0) / 3

    def next_units(
        self, running: Mapping[str, int], paused: Callable[[str], bool] | None = None
    ) -> list[tuple[ClaimUnit, int | None]]:
        """The units to claim now, each with its room (``None``: unbounded), starting one unit later each
        call so that a backlog of one unit cannot starve the others of the worker's free slots.

        ``running`` counts this process's deliveries in flight per step; a limited step that is full is left
        out, and so is a step ``paused`` says is paused (its rate limit is full until its window opens).
        """
        if not self.units:
            return []
        start = self._turn % len(self.units)
        self._turn += 1
        chosen: list[tuple[ClaimUnit, int | None]] = []
        for unit in self.units[start:] + self.units[:start]:
            if paused is not None and len(unit.steps) == 1 and paused(unit.steps[0]):
                continue
            if unit.limit is None:
                chosen.append((unit, None))
                continue
            room = unit.limit - running.get(unit.steps[0], 0)
            if room > 0:
                chosen.append((unit, room))
        return chosen

    def group_by_lease(self, deliveries: Mapping[str, str]) -> dict[float, list[str]]:
        """``{lease: [delivery id, ...]}`` of ``deliveries`` (id → step), for renewing each at its own lease."""
        groups: dict[float, list[str]] = {}
        for delivery_id, step in deliveries.items():
            groups.setdefault(self.leases[step], []).append(delivery_id)
        return groups
