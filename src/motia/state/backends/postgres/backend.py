"""``PostgresBackend``: the store's methods, composed from the connection layer and one mixin per contract.

The ``StateStore`` methods come from :class:`~motia.state.backends.postgres.keyvalue.PostgresKeyValue`, the
``DeliveryStore`` methods from :class:`~motia.state.backends.postgres.delivery.PostgresDelivery` (its operator
methods from :class:`~motia.state.backends.postgres.operate.PostgresOperations`) and the
``StreamStore`` methods from :class:`~motia.state.backends.postgres.streams.PostgresStreams`; the wake-ups of
other processes' commits (``LISTEN``) from :mod:`~motia.state.backends.postgres.notify`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from motia.state.backends._writes import check_age, check_limit
from motia.state.backends.base import StateBackend
from motia.state.backends.postgres.delivery import PostgresDelivery, _cap_dead_letters
from motia.state.backends.postgres.keyvalue import PostgresKeyValue
from motia.state.backends.postgres.operate import PostgresOperations
from motia.state.backends.postgres.schema import migrate
from motia.state.backends.postgres.settings import parse_url
from motia.state.backends.postgres.stream_retention import _prune_streams
from motia.state.backends.postgres.streams import PostgresStreams
from motia.state.backends.types import PruneResult, ScopeStats, StoreStats

#: Per scope: stored keys, their bytes (key and value as stored) and how many have expired.
_SCOPE_STATS = (
    "SELECT scope, count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0),"
    " count(*) FILTER (WHERE expires_at IS NOT NULL AND expires_at <= $1) FROM motia_state GROUP BY scope"
)
#: The outbox (dispatch deletes what it consumed), deliveries, dead letters, subscriptions, steps, and the
#: stream groups, items and changes.
_COUNTS = (
    "SELECT (SELECT count(*) FROM motia_state_events), (SELECT count(*) FROM motia_deliveries),"
    " (SELECT count(*) FROM motia_dead_letters),"
    " (SELECT count(*) FROM motia_subscriptions) + (SELECT count(*) FROM motia_stream_subscriptions),"
    " (SELECT count(*) FROM motia_steps), (SELECT count(*) FROM motia_stream_groups),"
    " (SELECT count(*) FROM motia_stream_items), (SELECT count(*) FROM motia_stream_changes)"
)
#: Each table of the store's schema with its indexes and TOAST (``pg_total_relation_size``).
_TABLE_SIZES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = current_schema() AND c.relkind = 'r' AND c.relname LIKE 'motia%' ORDER BY c.relname"
)


class PostgresBackend(PostgresStreams, PostgresOperations, PostgresDelivery, PostgresKeyValue, StateBackend):
    """State in a PostgreSQL database (10 or newer), shared by every process that opens the same URL and schema.

    Opening connects once and creates or migrates the tables (:mod:`~motia.state.backends.postgres.schema`),
    so an unreachable server, a wrong password or a missing permission is an error here, naming the URL
    (password masked). ``schema`` and ``timeout`` override the URL's options.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        settings = parse_url(url, schema=schema, timeout=timeout)
        self._init_connections(settings)
        self._clock = clock
        self._events_enabled = False
        self._open_blocking(self._prepare)
        self._init_delivery()
        self._init_streams()

    async def _prepare(self, conn: object) -> None:
        await migrate(conn, self.schema, self.url)

    async def aclose(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._close_streams()
        await self._close_delivery()
        await self._close_pools()

    async def prune(
        self,
        *,
        dead_letter_age: float | None,
        step_age: float | None,
        stream_age: float | None = None,
        dead_letter_limit: int | None = None,
    ) -> PruneResult:
        stream_age = check_age("stream_age", stream_age)
        dead_letter_limit = check_limit("dead_letter_limit", dead_letter_limit)
        result = await self._prune_deliveries(dead_letter_age, step_age)
        if dead_letter_limit is not None:
            capped = await self._transact(
                _cap_dead_letters, dead_letter_limit, what="apply dead-letter retention", events=False
            )
            result = result._replace(dead_letters=result.dead_letters + capped)
        if stream_age is None:
            return result
        changes = groups = 0
        more = True
        while more:  # a batch per transaction, so a change waits for one batch at most
            removed, forgotten, more = await self._transact(
                _prune_streams, self._clock() - stream_age, what="apply stream retention", events=False
            )
            changes += removed
            groups += forgotten
        return result._replace(stream_changes=changes, stream_groups=groups)

    async def stats(self) -> StoreStats:
        rows = await self._fetch(_SCOPE_STATS, self._clock(), what="count keys")
        scopes = {bytes(scope).decode(): ScopeStats(int(keys), int(size)) for scope, keys, size, _ in rows}
        (counts,) = await self._fetch(_COUNTS, what="count rows")
        outbox, pending, dead, subscriptions, steps, groups, items, changes = (int(n) for n in counts)
        tables = {f"table:{name}": int(size) for name, size in await self._fetch(_TABLE_SIZES, what="measure tables")}
        size = {"total": sum(tables.values()), **tables}
        expired = sum(int(row[3]) for row in rows)
        return StoreStats(scopes, expired, outbox, pending, dead, subscriptions, steps, groups, items, changes, size)
