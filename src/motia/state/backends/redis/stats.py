"""``stats()`` of the Redis backend: one read-only function call (``motia1_stats`` in ``functions.lua``) and
``INFO memory``. A mixin of :class:`~motia.state.backends.redis.backend.RedisBackend`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from motia.state.backends.types import ScopeStats, StoreStats


class RedisStats:
    """The host class supplies ``_call``, ``_command`` and the clock."""

    _clock: Callable[[], float]
    _call: Callable[..., Awaitable[Any]]
    _command: Callable[..., Awaitable[Any]]

    async def stats(self) -> StoreStats:
        now = repr(float(self._clock()))  # as the backend formats times for its functions
        scope_rows, counts, parts = await self._call("motia1_stats", now)
        scopes = {
            scope_rows[i].decode(): ScopeStats(int(scope_rows[i + 1]), int(scope_rows[i + 2]))
            for i in range(0, len(scope_rows), 4)
        }
        expired, outbox, pending, dead, subscriptions, steps, groups, items, changes = (int(n) for n in counts)
        measured = {parts[i].decode(): int(parts[i + 1]) for i in range(0, len(parts), 2)}
        size = {"total": sum(measured.values()), **measured}
        info = await self._command("INFO", "memory")
        for line in info.decode().splitlines():
            if line.startswith("used_memory:"):  # the whole server's, every store and database on it
                size["server_used_memory"] = int(line.partition(":")[2])
        return StoreStats(scopes, expired, outbox, pending, dead, subscriptions, steps, groups, items, changes, size)
