"""Finding the claimable deliveries of a claim: the oldest ``limit`` by ``seq`` among the waiting ones of its
steps that are due and whose ``(step, order_key)`` has fewer than their ``order_slots`` older deliveries.

A seq-ordered walk tests each waiting delivery in turn (one probe of the ``(step, order_key, seq)`` index for
an older sibling) and stops at ``limit``: cheap when most deliveries are claimable (many keys with an event or
two each). Behind a hot key (a counter, a summary row, one busy FIFO group) every key's head is leased and
every other delivery is blocked, so that walk read the whole backlog to find nothing: each claim cost the
backlog, its drain the square of it (issue 15). So the walk reads a window of the steps' deliveries (the
``limit`` plus :data:`BLOCKED_WINDOW`, in seq order) and, when the window came back short of ``limit`` but
full (more deliveries wait after it), counts the steps' order keys (one seek each, a loose index scan) up
to a quarter of the deliveries read: when the keys are that few, the rest is found from the index instead,
the first deliveries of each key as far as their ``order_slots`` reach and the unordered deliveries
(``order_key IS NULL``, first in that index) in seq order; else the walk goes on with a window twice as
large. A claim behind hot keys then costs about keys + ``limit`` seeks (after reading at most a few times as
many deliveries as there are keys), whatever the backlog. When many keys hold the blocked deliveries a few
deep each, the walk never hands over and costs more than one unbounded walk (windows, their ends, the keys
counted: +31 % per claim over 1,000 keys four deep, see docs/benchmarks.md, session 29).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from motia.state.backends.types import MAX_ORDER_SLOTS

#: Deliveries beyond ``limit`` the seq-ordered walk reads before it first asks whether the rest is cheaper to
#: find from the index: when the claim's steps have at most a quarter as many order keys as it read.
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

#: The window of one step: its deliveries' seqs after seq ``?2`` (``?3`` of them at most, oldest first), from the
#: ``(step, seq)`` index alone.
_WINDOW_ARM = "SELECT seq FROM motia_deliveries WHERE step = ?{step} AND seq > ?2"

#: The walk: the free deliveries of a window, ``?{limit}`` at most, oldest first (``?1``: now, the steps from
#: ``?4``). The window is a co-routine the outer query reads in its order, each delivery looked up by its seq,
#: and stops reading at the limit, so its later deliveries are not probed (an ``ORDER BY`` here would probe
#: them all, then sort). Several steps' windows are merged by seq, each in its index's order. As cheap as the
#: unbounded walk it replaced (callgrind: 81.0k vs 88.4k instructions for a claim of 4, 275.1k vs 273.7k for
#: 16); the window with every column (``SELECT *``) was 25-33 % dearer.
_WALK = f"""SELECT {_COLUMNS} FROM ({{window}} ORDER BY seq LIMIT ?3) w CROSS JOIN motia_deliveries d ON d.seq = w.seq
    WHERE {_WAITING.format(now=1)} AND {_FREE} LIMIT ?{{limit}}"""

#: The last seq of a window (``?2``, ``?3`` as in the walk, the steps from ``?4``): from the ``(step, seq)``
#: index alone; none when the window is not full (nothing waits after it).
_WINDOW_END = "SELECT seq FROM ({window} ORDER BY seq) LIMIT 1 OFFSET ?3 - 1"

#: The free deliveries of step ``?2`` after seq ``?3`` found from the ``(step, order_key, seq)`` index, oldest
#: ``?4`` first (``?1``: now). ``keys`` visits each order key of the step once (the next is one seek past the
#: last); ``walk`` reads each key's deliveries oldest first while they may be free: position ``pos`` is free
#: for a delivery whose ``order_slots`` exceed it, so the walk goes on while some delivery read so far (the
#: head, usually) allows more. (So a delivery whose ``order_slots`` exceed those of every older one of its key,
#: a limit raised while the key had a backlog, is not found here: it waits until a window reaches it, later
#: than the walk would have leased it, never sooner.) The unordered deliveries come from the same index
#: (``order_key IS NULL``).
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
    WHERE walk.pos < max(d.order_slots, 1) AND d.seq > ?3 AND {_WAITING.format(now=1)}
UNION ALL
SELECT {_COLUMNS} FROM motia_deliveries d
    WHERE d.step = ?2 AND d.order_key IS NULL AND d.seq > ?3 AND {_WAITING.format(now=1)}
ORDER BY 7 LIMIT ?4"""

#: The next ``?2`` order keys of step ``?1`` (after ``?3`` with ``{after}``), counted, and the last of them: a
#: loose index scan, each key one seek past the one before.
_COUNT_KEYS = """
WITH RECURSIVE keys(k, n) AS (
    SELECT (SELECT order_key FROM motia_deliveries WHERE step = ?1 AND {after}
            ORDER BY order_key LIMIT 1), 1
    UNION ALL
    SELECT (SELECT order_key FROM motia_deliveries WHERE step = ?1 AND order_key > keys.k
            ORDER BY order_key LIMIT 1), keys.n + 1 FROM keys WHERE keys.k IS NOT NULL AND keys.n < ?2
)
SELECT count(k), max(k) FROM keys"""
_FIRST_KEYS = _COUNT_KEYS.format(after="order_key IS NOT NULL AND ?3 IS NULL")
_NEXT_KEYS = _COUNT_KEYS.format(after="order_key > ?3")

_STATEMENTS: dict[int, tuple[str, str]] = {}


def _statements(steps: int) -> tuple[str, str]:
    """The walk and the window's end over ``steps`` steps (kept per count: an app claims for the same steps every
    time)."""
    statements = _STATEMENTS.get(steps)
    if statements is None:
        window = " UNION ALL ".join(_WINDOW_ARM.format(step=4 + arm) for arm in range(steps))
        statements = (_WALK.format(window=window, limit=4 + steps), _WINDOW_END.format(window=window))
        _STATEMENTS[steps] = statements
    return statements


def claimable(connection: sqlite3.Connection, steps: Sequence[str], now: float, limit: int) -> list[Any]:
    """The deliveries a claim of ``limit`` on ``steps`` leases at ``now``, oldest first: rows of ``id, step,
    kind, payload, attempts (this one counted), created_at, seq``."""
    walk, window_end = _statements(len(steps))
    window = limit + BLOCKED_WINDOW
    last = -1  # seqs start at 1
    read = 0
    keys: _Keys | None = None  # counted only if a window comes back full and short
    found: list[Any] = connection.execute(walk, (now, last, window, *steps, limit)).fetchall()
    while len(found) < limit:
        end = connection.execute(window_end, (now, last, window, *steps)).fetchone()
        if end is None:
            return found  # the window held every delivery after ``last``
        last = end[0]
        read += window
        keys = keys or _Keys(steps)
        if keys.at_most(connection, read // 4):
            # Every delivery up to seq ``last`` was read, the others are found from the index.
            wanted = limit - len(found)
            beyond: list[Any] = []
            for step in steps:
                beyond.extend(connection.execute(_FROM_INDEX, (now, step, last, wanted)))
            if len(steps) > 1:
                beyond.sort(key=lambda row: row[6])
            return found + beyond[:wanted]
        window *= 2
        found += connection.execute(walk, (now, last, window, *steps, limit - len(found)))
    return found


class _Keys:
    """The order keys of a claim's steps, counted as far as a claim needs to know (so never twice)."""

    def __init__(self, steps: Sequence[str]) -> None:
        #: Per step: the keys counted, the last of them, and whether they are all of its keys.
        self.counted: dict[str, tuple[int, str | None, bool]] = {step: (0, None, False) for step in steps}

    def at_most(self, connection: sqlite3.Connection, most: int) -> bool:
        """Whether the steps have at most ``most`` order keys in all."""
        total = sum(count for count, _, _ in self.counted.values())
        for step, (count, last, done) in self.counted.items():
            if total > most:
                return False
            if done:
                continue
            wanted = most - total + 1  # one past: then there are too many
            more, newest = connection.execute(
                _FIRST_KEYS if last is None else _NEXT_KEYS, (step, wanted, last)
            ).fetchone()
            self.counted[step] = (count + more, newest if more else last, more < wanted)
            total += more
        return total <= most
