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

    The worker appends ``(seq, payload)`` to :attr:`waiting` as it routes each delivery of a claim (a list
    append, no call of its own; the payload as stored, decoded only if the console reads it:
    ``StateEventHub.record_payloads``) and calls :meth:`flush` once the claim's deliveries are started, before
    any of their handlers runs: one lock of the hub per claim instead of one per delivery (issue 15). The seqs seen
    lately are kept in two generations of up to :data:`KEPT` each (at least the last that many are
    remembered): sets, not an ordered dict, a tenth of the cost per delivery.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.waiting: list[tuple[int | None, bytes]] = []
        self._seen: set[int] = set()
        self._seen_before: set[int] = set()

    def flush(self) -> None:
        """Record the waiting events not shown yet, in the order they came (never raises)."""
        waiting = self.waiting
        if not waiting:
            return
        self.waiting = []
        hub = getattr(self.app, "state_events", None)
        if hub is None:
            return
        seen, before = self._seen, self._seen_before
        new: list[bytes] = []
        for seq, payload in waiting:
            if seq is not None and seq not in seen and seq not in before:
                seen.add(seq)
                new.append(payload)
        if len(seen) >= KEPT:
            self._seen_before, self._seen = seen, set()
        if not new:
            return
        try:
            hub.record_payloads(new)
        except Exception:  # the console feed is a view: its failure must not fail a delivery
            logger.exception("delivery: publishing %d event(s) to the console feed failed", len(new))
