"""Shared by the delivery tests (imported as a top-level module, like ``tests/e2e/motia_proc.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from typing import Any

from motia.runtime.app import MotiaApp
from motia.runtime.delivery import DeliveryOptions

#: Fast polls and short leases: tests wait on events, never on these timers, but lost wake-ups show quickly.
FAST = DeliveryOptions(lease=5.0, poll_interval=0.02, concurrency=8)

#: ``await start_app(steps, state=None, **app_options)``.
StartApp = Callable[..., Coroutine[Any, Any, MotiaApp]]


def assert_throttled(starts: list[float], *, sent_at: float, period: float, limit: int) -> None:
    """Starts of one rate-limit bucket obey its windows, whatever the delays between a claim and its
    handler: the limiter admits at most ``limit`` starts in each window from the one the messages were sent
    in, and a handler starts after it was admitted, so the ``limit * m + 1``-th start comes ``m`` windows
    after the first at the earliest. (Bucketing the start times instead would charge a start admitted just
    before a window closed to the next window.)"""
    first = math.floor(sent_at / period)
    ordered = sorted(starts)
    for m in range(1, math.ceil(len(ordered) / limit)):
        assert ordered[limit * m] >= (first + m) * period, (m, ordered, first)
