"""Finding the claimable deliveries of a claim: the oldest ``limit`` by ``seq`` among the waiting ones of its
steps that are due and whose ``(step, order_key)`` has fewer than their ``order_slots`` older deliveries.

A seq-ordered walk tests each waiting delivery in turn (one probe of the ``(step, order_key, seq)`` index for
an older sibling) and stops at ``limit``: cheap when most deliveries are claimable (many keys with an event or
two each). Behind a hot key (a counter, a summary row, one busy FIFO group) every key's head is leased and
every other delivery is blocked, so that walk read the whole backlog to find nothing: each claim cost the
backlog, its drain the square of it (issue 15). So the walk gives up after :data:`BLOCKED_WINDOW` blocked
deliveries and the rest is found from the index instead: the step's order keys one seek each (a loose
index scan), the first deliveries of each key as far as its ``order_slots`` reach, and the unordered
deliveries (``order_key IS NULL``, first in that index) in seq order: about keys + ``limit`` seeks,
whatever the backlog.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from motia.state.backends.types import MAX_ORDER_SLOTS

#: Blocked deliveries the seq-ordered walk reads before the rest is found from the index.
BLOCKED_WINDOW = 64

_COLUMNS = "d.id, d.step, d.kind, d.payload, d.attempts + 1, d.created_at, d.seq"
_WAITING = "d.available_at <= ?{now} AND (d.owner IS NULL OR d.lease_until <= ?{now})"

#: Whether a waiting delivery ``d`` may be claimed: unordered, or fewer than its ``order_slots`` older ones of
#: its key remain (for one slot: none, ``NOT EXISTS``; for more, counted up to :data:`MAX_ORDER_SLOTS`).
_FREE = f"""(d.order_key IS NULL
    OR (d.order_slots <= 1 AND NOT EXISTS (
        SELECT 1 FROM motia_deliveries e WHERE e.step = d.step AND e.order_key = d.order_key AND e.seq < d.seq
    ))
    OR (d.order_slots > 1 AND (
        SELECT COUNT(*) FROM (
            SELECT 1 FROM motia_deliveries e
            WHERE e.step = d.step AND e.order_key = d.order_key AND e.seq < d.seq LIMIT {MAX_ORDER_SLOTS}
        )
    ) < d.order_slots))"""

#: One arm per step of the walk, merged by seq (each arm in its index's order, so no sort of the backlog):
#: every waiting delivery that is due, with whether it is free.
_WALK_ARM = f"SELECT {_COLUMNS}, {_FREE} FROM motia_deliveries d WHERE d.step = ?{{step}} AND {_WAITING.format(now=1)}"

#: The free deliveries of step ``?2`` after seq ``?3`` found from the ``(step, order_key, seq)`` index, oldest
#: ``?4`` first (``?1``: now). ``keys`` visits each order key of the step once (the next is one seek past the
#: last); ``walk`` reads each key's deliveries oldest first while they may be free: position ``pos`` is free
#: for a delivery whose ``order_slots`` exceed it, so the walk goes on while some delivery read so far (the
#: head, usually) allows more. The unordered deliveries come from the same index (``order_key IS NULL``).
_FROM_INDEX = f"""
WITH RECURSIVE
keys(k) AS (
    SELECT (SELECT order_key FROM motia_deliveries WHERE step = ?2 AND order_key IS NOT NULL
            ORDER BY order_key LIMIT 1)
    UNION ALL
    SELECT (SELECT order_key FROM motia_deliveries WHERE step = ?2 AND order_key > keys.k
            ORDER BY order_key LIMIT 1) FROM keys WHERE keys.k IS NOT NULL
),
walk(k, seq, pos, reach) AS (
    SELECT keys.k, h.seq, 0, min(h.order_slots, {MAX_ORDER_SLOTS}) FROM keys JOIN motia_deliveries h
        ON h.seq = (SELECT seq FROM motia_deliveries WHERE step = ?2 AND order_key = keys.k ORDER BY seq LIMIT 1)
        WHERE keys.k IS NOT NULL
    UNION ALL
    SELECT walk.k, n.seq, walk.pos + 1, max(walk.reach, min(n.order_slots, {MAX_ORDER_SLOTS})) FROM walk
        JOIN motia_deliveries n ON n.seq = (
            SELECT seq FROM motia_deliveries WHERE step = ?2 AND order_key = walk.k AND seq > walk.seq
            ORDER BY seq LIMIT 1)
        WHERE walk.pos + 1 < walk.reach
)
SELECT {_COLUMNS} FROM walk JOIN motia_deliveries d ON d.seq = walk.seq
    WHERE walk.pos < d.order_slots AND d.seq > ?3 AND {_WAITING.format(now=1)}
UNION ALL
SELECT {_COLUMNS} FROM motia_deliveries d
    WHERE d.step = ?2 AND d.order_key IS NULL AND d.seq > ?3 AND {_WAITING.format(now=1)}
ORDER BY 7 LIMIT ?4"""

_WALKS: dict[int, str] = {}


def _walk_sql(steps: int) -> str:
    """The walk over ``steps`` steps (kept per count of steps: an app claims for the same ones every time)."""
    sql = _WALKS.get(steps)
    if sql is None:
        sql = " UNION ALL ".join(_WALK_ARM.format(step=2 + arm) for arm in range(steps)) + " ORDER BY 7"
        _WALKS[steps] = sql
    return sql


def claimable(connection: sqlite3.Connection, steps: Sequence[str], now: float, limit: int) -> list[Any]:
    """The deliveries a claim of ``limit`` on ``steps`` leases at ``now``, oldest first: rows of ``id, step,
    kind, payload, attempts (this one counted), created_at, seq``."""
    found: list[Any] = []
    blocked = 0
    last = 0
    cursor = connection.execute(_walk_sql(len(steps)), (now, *steps))
    try:
        for row in cursor:
            if row[7]:
                found.append(row[:7])
                if len(found) == limit:
                    return found
            else:
                blocked += 1
                if blocked == BLOCKED_WINDOW:
                    last = row[6]
                    break
        else:
            return found  # every waiting delivery was read
    finally:
        cursor.close()
    # Past the window: every delivery up to seq ``last`` was read, the others are found from the index.
    wanted = limit - len(found)
    beyond: list[Any] = []
    for step in steps:
        beyond.extend(connection.execute(_FROM_INDEX, (now, step, last, wanted)))
    if len(steps) > 1:
        beyond.sort(key=lambda row: row[6])
    return found + beyond[:wanted]
