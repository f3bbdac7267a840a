"""Stream retention on PostgreSQL: the stream part of ``PostgresBackend.prune`` (changes older than an age
leave the groups' histories; a group left with neither items nor changes is forgotten, raising the store's
seq floor, ``motia_meta``'s ``stream_seq_floor``, where a group written again counts on from).
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from motia.state.backends.postgres.streams import _OLDEST, TAIL_AGE

if TYPE_CHECKING:
    from motia.state.backends.postgres.connection import Tx

#: Stream changes one transaction of the age retention removes at most.
PRUNE_BATCH = 5000

_RAISE_FLOOR = (
    "INSERT INTO motia_meta (name, value) VALUES ('stream_seq_floor', $1) ON CONFLICT (name) DO UPDATE"
    " SET value = greatest(motia_meta.value::bigint, excluded.value::bigint)::text"
)


async def _prune_streams(tx: Tx, cut: float) -> tuple[int, int, bool]:
    """Remove up to :data:`PRUNE_BATCH` of the oldest changes recorded before ``cut`` (never one the tail
    may still need), keep each touched group's oldest-change fields true, and forget the groups left with
    neither items nor changes (raising the seq floor to theirs). The groups are locked first, in sorted
    order, as a batch of changes locks them, so the two never wait for each other in a cycle. Returns
    (changes removed, groups forgotten, whether more may be due)."""
    conn = tx.conn
    cut = min(cut, tx.now - TAIL_AGE)
    rows = await conn.fetch(
        "SELECT position, stream, grp, timestamp FROM motia_stream_changes ORDER BY position LIMIT $1", PRUNE_BATCH
    )
    old = [row for row in itertools.takewhile(lambda row: row[3] < cut, rows)]  # a young one waits for the older
    if not old:
        return 0, 0, False
    groups = sorted({(bytes(row[1]), bytes(row[2])) for row in old})
    await conn.execute(
        "SELECT 1 FROM motia_stream_groups WHERE (stream, grp) IN (SELECT * FROM unnest($1::bytea[], $2::bytea[]))"
        " ORDER BY stream, grp FOR UPDATE",
        [stream for stream, _ in groups],
        [group for _, group in groups],
    )
    status = await conn.execute(
        "DELETE FROM motia_stream_changes WHERE position <= $1 AND timestamp < $2", old[-1][0], cut
    )
    head = await conn.fetchval("SELECT position FROM motia_stream_head")
    forgotten = 0
    for stream, group in groups:
        oldest = await conn.fetchrow(_OLDEST, stream, group)
        if oldest is not None:
            await conn.execute(
                "UPDATE motia_stream_groups SET (oldest, oldest_position, oldest_time) = ($3, $4, $5)"
                " WHERE stream = $1 AND grp = $2",
                stream,
                group,
                *oldest,
            )
            continue
        found = await conn.fetchrow(
            "SELECT seq, items FROM motia_stream_groups WHERE stream = $1 AND grp = $2", stream, group
        )
        if found is None:
            continue
        if found[1] == 0:
            await conn.execute("DELETE FROM motia_stream_groups WHERE stream = $1 AND grp = $2", stream, group)
            await conn.execute(_RAISE_FLOOR, str(found[0]))
            forgotten += 1
        else:  # no change left: the next one will be the oldest (bounds that only ever let a trim run)
            await conn.execute(
                "UPDATE motia_stream_groups SET oldest = seq + 1, oldest_position = $3, oldest_time = $4"
                " WHERE stream = $1 AND grp = $2",
                stream,
                group,
                head,
                tx.now,
            )
    return int(status.rsplit(" ", 1)[1]), forgotten, len(rows) == PRUNE_BATCH and len(old) == len(rows)
