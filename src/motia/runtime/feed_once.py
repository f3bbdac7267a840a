"""Showing each state event once in the console's live feed, however many steps receive it and however often
it is delivered again (split from :mod:`motia.runtime.delivery`)."""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["FeedOnce"]

logger = logging.getLogger("motia.runtime")

#: How many recently shown state events (at least) are remembered, not to show one twice.
KEPT = 10_000


class FeedOnce:
    """Records each state event in ``app``'s console hub (``app.state_events``, if it has one) the first time
    its ``seq`` is seen.

    The seqs seen lately are kept in two generations of up to :data:`KEPT` each (at least the last that
    many are remembered): sets, not an ordered dict, a tenth of the cost per delivery.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._seen: set[int] = set()
        self._seen_before: set[int] = set()

    def publish(self, seq: int | None, event: dict[str, Any]) -> None:
        seen = self._seen
        if seq is None or seq in seen or seq in self._seen_before:
            return
        hub = getattr(self.app, "state_events", None)
        if hub is None:
            return
        seen.add(seq)
        if len(seen) >= KEPT:
            self._seen_before, self._seen = seen, set()
        try:
            hub.record(event)
        except Exception:  # the console feed is a view: its failure must not fail a delivery
            logger.exception("delivery: publishing event %s to the console feed failed", seq)
