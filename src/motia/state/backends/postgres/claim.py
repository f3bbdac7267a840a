"""Claiming deliveries on PostgreSQL: the oldest ``limit`` by ``seq`` among the waiting deliveries of the claim's
steps that are due and whose ``(step, order_key)`` has fewer than their ``order_slots`` older deliveries, leased
in the claim's transaction (``FOR UPDATE SKIP LOCKED``: concurrent claimers pass over each other's rows).

A seq-ordered walk tests each waiting delivery in turn (one probe of the ``(step, order_key, seq)`` index for an
older sibling) and stops at ``limit``: cheap when most deliveries are claimable. Behind a hot key (a counter, a
summary row, one busy FIFO group) every key's head is leased and every other delivery is blocked, so that walk
read the whole backlog to find nothing: each claim cost the backlog, its drain the square of it (10.7 ms per
claim at 1,000 deliveries over 10 keys, 69.6 ms at 5,000). So the walk reads a window, the steps' next
``limit`` + :data:`BLOCKED_WINDOW` deliveries, in one statement that leases what it found (the common case: a
claim that fills is that one statement). When the window comes back short of ``limit`` but full (more
deliveries wait after it), the rest is found from the index instead: a loose index scan visits each order key
of the steps once (one seek past the last), each key's first deliveries are read as far as their
``order_slots`` reach, and the unordered deliveries (``order_key IS NULL``, a range of the same index) in seq
order. That costs one seek per key (and one per further delivery its ``order_slots`` let through) whatever the
backlog; a walk costs a lookup and a probe per delivery, and there are never fewer deliveries than keys, so going
to the index is never much dearer than walking on (unlike SQLite's claim, no count of the keys decides it: over
1,000 keys each four deep it costs about what the unbounded walk did, see docs/benchmarks.md).

One deviation from the walk, in the index path only (as on SQLite): a key's deliveries are read as far as the
largest ``order_slots`` among those read, so a delivery whose ``order_slots`` exceed those of every older one of
its key (a limit raised while the key had a backlog) waits until a window reaches it instead of being found at
once. Order and leases are never loosened by it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motia.state.backends.types import MAX_ORDER_SLOTS

if TYPE_CHECKING:
    from motia.state.backends.postgres.connection import Tx

#: Deliveries beyond ``limit`` the seq-ordered walk reads before the rest is found from the index.
BLOCKED_WINDOW = 64

#: Past every ``seq`` (a ``bigint``): a seek from ``(order_key, _LAST_SEQ)`` lands on the next key's head.
_LAST_SEQ = 2**63 - 1


def _waiting(row: str) -> str:
    """Whether delivery ``row`` waits for a claim at ``$2``: due, and not leased (or its lease ran out)."""
    return f"{row}.available_at <= $2 AND ({row}.owner IS NULL OR {row}.lease_until <= $2)"


_WAITING = _waiting("d")

#: The older deliveries of ``d``'s key, ``(step, order_key, seq)`` from ``(d.order_key, 0)`` to before ``d``: compared
#: as rows, a range only the per-key index holds (with ``e.order_key = d.order_key AND e.seq < d.seq`` the planner
#: may scan the primary key from the oldest delivery of every key instead, when the keys are few).
_OLDER = "e.step = d.step AND (e.order_key, e.seq) >= (d.order_key, 0) AND (e.order_key, e.seq) < (d.order_key, d.seq)"

#: Whether a waiting delivery ``d`` may be claimed: unordered, or fewer than its ``order_slots`` older ones of its
#: key remain (for one slot: none; for more, counted up to :data:`MAX_ORDER_SLOTS`). Both read the index in its
#: order (``ORDER BY ... LIMIT``): as ``NOT EXISTS`` the planner may take a sequential scan, and a bitmap scan
#: collects every older delivery first.
_FREE = f"""(d.order_key IS NULL
    OR (d.order_slots <= 1 AND (
        SELECT e.seq FROM motia_deliveries e WHERE {_OLDER} ORDER BY e.order_key, e.seq LIMIT 1
    ) IS NULL)
    OR (d.order_slots > 1 AND (
        SELECT count(*) FROM (
            SELECT 1 FROM motia_deliveries e WHERE {_OLDER} ORDER BY e.order_key, e.seq LIMIT {MAX_ORDER_SLOTS}
        ) AS older
    ) < d.order_slots))"""

#: The lease of the deliveries ``picked`` (``$4``: owner, ``$5``: lease end), answering their rows.
_LEASE = """
    UPDATE motia_deliveries d SET owner = $4, lease_until = $5, attempts = d.attempts + 1
    FROM picked WHERE d.seq = picked.seq
    RETURNING d.seq, d.id, d.step, d.kind, d.payload, d.attempts, d.created_at"""

#: One step's window: its first ``{size}`` deliveries' seqs, oldest first, from the ``(step, seq)`` index (a range
#: of ``(step, seq)`` rows, in that order: with ``step = ?`` the planner may walk the primary key instead, through
#: every other step's deliveries, when the store holds few steps).
_WINDOW_ARM = (
    "(SELECT step, seq FROM motia_deliveries WHERE (step, seq) > (($1::text[])[{arm}], 0)"
    f" AND (step, seq) < (($1::text[])[{{arm}}], {_LAST_SEQ}) ORDER BY step, seq LIMIT {{size}})"
)

#: The walk (``$1``: the steps, ``$2``: now, ``$3``: the limit, ``$6``: the window's size): the free deliveries of
#: a window, oldest first. The window is read lazily in its order (several steps' windows merged by seq, each read
#: in its index's order), each delivery looked up by its seq, so a claim that fills stops there and probes nothing
#: after; the rows are locked as they pass (``SKIP LOCKED`` under the limit: those other claimers hold are passed
#: over, and the walk reads on).
_WALK = f"""
    WITH picked AS (
        SELECT d.seq FROM ({{window}}) AS w JOIN motia_deliveries d ON d.seq = w.seq
        WHERE {_WAITING} AND {_FREE}
        ORDER BY {{order}} LIMIT $3
        FOR UPDATE OF d SKIP LOCKED
    ){_LEASE}"""

#: The last seq of a full window (``$1``: the steps, ``$2``: its size); none when the window is not full.
_WINDOW_END = "SELECT seq FROM ({window}) AS w ORDER BY seq OFFSET $2 - 1 LIMIT 1"

#: The free deliveries of the steps after seq ``$6`` found from the ``(step, order_key, seq)`` index, the oldest
#: ``$3`` (``$2``: now). ``walk`` visits each step's order keys in order, each key's deliveries oldest first while
#: they may be free (position ``pos`` is free for a delivery whose ``order_slots`` exceed it, so it goes on while
#: some delivery read so far, the head usually, allows more), then seeks past the key to the next one's head:
#: one seek per delivery it reads. The seeks compare ``(order_key, seq)`` as a row and ask for that order, which
#: only the per-key index gives (with ``order_key = ?`` and ``ORDER BY seq`` the planner may walk the primary key
#: instead, and read every older delivery of other keys). The unordered deliveries come from the same index
#: (:data:`_UNORDERED_ARM`), merged with the walk's by seq.
_FROM_INDEX = f"""
    WITH RECURSIVE walk(step, k, seq, pos, reach, free) AS (  -- free: by its position, and waiting when read
        SELECT s.step, h.order_key, h.seq, 0, least(h.order_slots, {MAX_ORDER_SLOTS}), h.waiting
        FROM unnest($1::text[]) AS s(step) CROSS JOIN LATERAL (
            SELECT d.order_key, d.seq, d.order_slots, {_WAITING} AS waiting FROM motia_deliveries d
            WHERE d.step = s.step AND d.order_key IS NOT NULL ORDER BY d.order_key, d.seq LIMIT 1
        ) AS h
        UNION ALL
        SELECT walk.step, n.order_key, n.seq, n.pos,
            CASE WHEN n.pos > 0 THEN greatest(walk.reach, least(n.order_slots, {MAX_ORDER_SLOTS}))
                ELSE least(n.order_slots, {MAX_ORDER_SLOTS}) END,
            n.waiting AND n.pos < greatest(n.order_slots, 1)
        FROM walk CROSS JOIN LATERAL (
            SELECT e.order_key, e.seq, e.order_slots, {_waiting("e")} AS waiting,
                CASE WHEN e.order_key = walk.k THEN walk.pos + 1 ELSE 0 END AS pos
            FROM motia_deliveries e
            WHERE e.step = walk.step AND (e.order_key, e.seq) > (walk.k, CASE WHEN walk.pos + 1 < walk.reach
                THEN walk.seq ELSE {_LAST_SEQ} END)
            ORDER BY e.order_key, e.seq LIMIT 1
        ) AS n
    ),
    picked AS (
        SELECT d.seq FROM (
            SELECT NULL::text AS order_key, walk.seq FROM walk WHERE walk.free AND walk.seq > $6
            UNION ALL {{unordered}}
        ) AS c JOIN motia_deliveries d ON d.seq = c.seq
        WHERE {_WAITING}
        ORDER BY c.order_key, c.seq LIMIT $3
        FOR UPDATE OF d SKIP LOCKED
    ){_LEASE}"""

#: One step's unordered deliveries after seq ``$6``, in the per-key index's order: ``(NULL, seq)``, so they merge
#: with the free deliveries the walk found (given ``order_key`` ``NULL`` too) by seq, read only as far as the
#: claim takes them, past those other claimers hold locked (``SKIP LOCKED``: each read up to the lock, as the
#: walk reads its window).
_UNORDERED_ARM = """(SELECT u.order_key, u.seq FROM motia_deliveries u
    WHERE u.step = ($1::text[])[{arm}] AND u.order_key IS NULL AND u.seq > $6 AND {waiting}
    ORDER BY u.order_key, u.seq)"""

_STATEMENTS: dict[int, tuple[str, str, str]] = {}


def _statements(steps: int) -> tuple[str, str, str]:
    """The walk, the window's end and the claim from the index over ``steps`` steps (kept per count: an app claims
    for the same steps every time)."""
    statements = _STATEMENTS.get(steps)
    if statements is None:

        def window(size: str) -> str:
            arms = " UNION ALL ".join(_WINDOW_ARM.format(arm=1 + arm, size=size) for arm in range(steps))
            return arms if steps == 1 else f"{arms} ORDER BY seq LIMIT {size}"

        # One step's window comes in (step, seq) order, which the planner knows only as such; several are merged.
        order = "w.step, w.seq" if steps == 1 else "w.seq"
        unordered = " UNION ALL ".join(
            _UNORDERED_ARM.format(arm=1 + arm, waiting=_waiting("u")) for arm in range(steps)
        )
        statements = (
            _WALK.format(window=window("$6"), order=order),
            _WINDOW_END.format(window=window("$2")),
            _FROM_INDEX.format(unordered=unordered),
        )
        _STATEMENTS[steps] = statements
    return statements


async def claim_rows(tx: Tx, steps: list[str], owner: str, limit: int, lease: float) -> list[Any]:
    """Lease the deliveries a claim of ``limit`` on ``steps`` takes now, in ``tx``: rows of ``seq, id, step, kind,
    payload, attempts (this one counted), created_at``, oldest first."""
    walk, window_end, from_index = _statements(len(steps))
    window = limit + BLOCKED_WINDOW
    until = tx.now + lease
    found = list(await tx.conn.fetch(walk, steps, tx.now, limit, owner, until, window))
    if len(found) < limit:
        end = await tx.conn.fetchval(window_end, steps, window)
        if end is not None:  # the window was full: the rest is found from the index
            found += await tx.conn.fetch(from_index, steps, tx.now, limit - len(found), owner, until, end)
    found.sort(key=lambda row: row[0])
    return found
