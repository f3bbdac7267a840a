"""State change events of a store or app, recorded for assertions."""

from __future__ import annotations

import contextlib
import itertools
from types import TracebackType
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.state_triggers import decode_state_event, subscriptions
from motia.runtime.types import StateTriggerInput
from motia.state.backends.types import Subscription
from motia.state.manager import StateManager
from motia.testing.client import AppClient

__all__ = ["StateEventRecorder", "record_state_events"]


class StateEventRecorder:
    """State change events of a store, as :class:`~motia.StateTriggerInput`, for assertions.

    Made by :func:`record_state_events`. It subscribes like a state trigger (``scope``/``key`` filter),
    so it sees every change committed after it started; :meth:`collect` fetches what is new.
    """

    _ids = itertools.count(1)

    def __init__(
        self, state: StateManager, *, app: MotiaApp | None = None, scope: str | None = None, key: str | None = None
    ) -> None:
        self.state = state
        self.app = app
        self.subscription = Subscription(f"motia.testing:recorder-{next(self._ids)}", scope, key)
        self.events: list[StateTriggerInput] = []

    async def __aenter__(self) -> StateEventRecorder:
        await self.state.backend.enable_events()
        if self.app is not None and self.app.delivery is not None:
            self.app.delivery.subscriptions.append(self.subscription)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.app is not None and self.app.delivery is not None:
            with contextlib.suppress(ValueError):
                self.app.delivery.subscriptions.remove(self.subscription)

    async def collect(self) -> list[StateTriggerInput]:
        """Fetch the events committed so far; returns (and keeps in :attr:`events`) every event seen."""
        backend = self.state.backend
        if self.app is None:
            others = []
        elif self.app.delivery is not None:
            others = self.app.delivery.subscriptions
        else:
            others = subscriptions(self.app.steps)
        wanted = [*(s for s in others if s != self.subscription), self.subscription]
        while await backend.dispatch_events(wanted):
            pass
        name = self.subscription.step
        owner = f"{name}:{id(self)}"
        new: list[StateTriggerInput] = []
        while claimed := await backend.claim([name], owner=owner, limit=1000, lease=60.0):
            for delivery in claimed:
                new.append(decode_state_event(delivery.payload))
                await backend.complete(delivery.id, owner=owner)
        self.events.extend(sorted(new, key=lambda event: event.seq or 0))
        return self.events

    def of(
        self, event_type: str | None = None, *, scope: str | None = None, key: str | None = None
    ) -> list[StateTriggerInput]:
        """The collected events of that type, scope and key (``None``: any)."""
        return [
            event
            for event in self.events
            if event_type in (None, event.event_type)
            and scope in (None, event.group_id)
            and key in (None, event.item_id)
        ]

    def assert_event(
        self, event_type: str, *, scope: str | None = None, key: str | None = None, **fields: Any
    ) -> StateTriggerInput:
        """The one collected event matching; ``fields`` (``new_value=...``) must be equal too.

        Call :meth:`collect` first. Raises ``AssertionError`` listing the events seen.
        """
        found = [
            event
            for event in self.of(event_type, scope=scope, key=key)
            if all(getattr(event, name) == value for name, value in fields.items())
        ]
        if len(found) != 1:
            seen = "\n".join(
                f"  {e.event_type} {e.group_id}/{e.item_id} v{e.version}: {e.old_value!r} -> {e.new_value!r}"
                for e in self.events
            )
            raise AssertionError(
                f"expected one {event_type} event for {scope or '*'}/{key or '*'} {fields or ''}, found "
                f"{len(found)}; seen:\n{seen or '  (nothing)'}"
            )
        return found[0]


def record_state_events(
    target: StateManager | MotiaApp | AppClient, *, scope: str | None = None, key: str | None = None
) -> StateEventRecorder:
    """``async with record_state_events(state_or_app) as events:`` ... ``await events.collect()``.

    With an app (or ``app_client``), its own triggers still get every event: the recorder joins the
    app's dispatcher as one more subscriber.
    """
    app = target.app if isinstance(target, AppClient) else target if isinstance(target, MotiaApp) else None
    state = app.state if app is not None else target
    assert isinstance(state, StateManager)
    return StateEventRecorder(state, app=app, scope=scope, key=key)
