"""``MotiaEvents``: an app's state events and enqueued messages in one recorder (the ``motia_events`` fixture)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.queue import Message
from motia.runtime.types import StateTriggerInput
from motia.testing.client import AppClient
from motia.testing.enqueues import _ANY, EnqueueRecorder, capture_enqueues
from motia.testing.state_events import StateEventRecorder, record_state_events

__all__ = ["MotiaEvents", "record_events"]


class MotiaEvents:
    """What an app did: :attr:`state` (a :class:`StateEventRecorder`) and :attr:`enqueued` (an
    :class:`EnqueueRecorder`), with assertions that fetch the events committed so far first."""

    def __init__(self, state: StateEventRecorder, enqueued: EnqueueRecorder) -> None:
        self.state = state
        self.enqueued = enqueued

    @property
    def messages(self) -> list[Message]:
        """Every message enqueued so far, in order."""
        return self.enqueued.messages

    async def collect(self) -> list[StateTriggerInput]:
        """Every state event committed so far, in commit order."""
        return await self.state.collect()

    async def of(
        self, event_type: str | None = None, *, scope: str | None = None, key: str | None = None
    ) -> list[StateTriggerInput]:
        """The state events of that type, scope and key (``None``: any), committed so far."""
        await self.state.collect()
        return self.state.of(event_type, scope=scope, key=key)

    async def assert_event(
        self, event_type: str, *, scope: str | None = None, key: str | None = None, **fields: Any
    ) -> StateTriggerInput:
        """The one state event matching (``fields`` such as ``new_value=...`` must be equal too);
        ``AssertionError`` listing the events seen otherwise."""
        await self.state.collect()
        return self.state.assert_event(event_type, scope=scope, key=key, **fields)

    async def assert_no_event(self, event_type: str, *, scope: str | None = None, key: str | None = None) -> None:
        """``AssertionError`` if a state event of that type, scope and key was committed."""
        found = await self.of(event_type, scope=scope, key=key)
        if found:
            raise AssertionError(f"expected no {event_type} event for {scope or '*'}/{key or '*'}, found {found}")

    def assert_enqueued(self, topic: str, data: Any = _ANY) -> Message:
        """The one message sent to ``topic`` (with ``data``, if given); ``AssertionError`` otherwise."""
        return self.enqueued.assert_enqueued(topic, data)

    def data(self, topic: str) -> list[Any]:
        """The data of every message sent to ``topic``, in order."""
        return self.enqueued.data(topic)


@contextlib.asynccontextmanager
async def record_events(target: MotiaApp | AppClient) -> AsyncIterator[MotiaEvents]:
    """``async with record_events(app) as events:`` records the app's state events and messages inside the block."""
    app = target.app if isinstance(target, AppClient) else target
    async with record_state_events(app) as state:
        with capture_enqueues(app) as enqueued:
            yield MotiaEvents(state, enqueued)
