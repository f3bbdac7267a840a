"""Shared by the delivery tests (imported as a top-level module, like ``tests/e2e/motia_proc.py``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions

#: Fast polls and short leases: tests wait on events, never on these timers, but lost wake-ups show quickly.
FAST = DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=8)

#: ``await start_app(steps, state=None, **app_options)``.
StartApp = Callable[..., Coroutine[Any, Any, MotiaApp]]
