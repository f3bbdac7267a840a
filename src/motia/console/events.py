"""The event hub moved to :mod:`motia.runtime.events` (the runtime publishes to it); this module keeps
``from motia.console.events import StateEventHub`` working."""

from __future__ import annotations

from motia.runtime.events import Event, StateEventHub, Subscription

__all__ = ["Event", "StateEventHub", "Subscription"]
