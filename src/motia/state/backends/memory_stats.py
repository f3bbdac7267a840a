"""``stats()`` of the memory backend: what it holds, counted under its lock. A mixin of
:class:`~motia.state.backends.memory.MemoryBackend`, which supplies the structures it reads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motia.state.backends._writes import is_live
from motia.state.backends.types import ScopeStats, StoreStats


class MemoryStats:
    """The host class supplies the lock, the clock and the stores' structures."""

    _lock: threading.Lock
    _clock: Callable[[], float]
    _scopes: dict[str, Any]
    _deliveries: dict[str, Any]
    _dead: dict[str, Any]
    _events: list[Any]
    _subscriptions: dict[Any, None]
    _stream_subscriptions: dict[Any, None]
    _steps_seen: dict[str, float]

    if TYPE_CHECKING:  # provided by the host class

        def _check_open(self) -> None: ...
        def _stream_stats(self) -> tuple[int, int, int, int]: ...

    async def stats(self) -> StoreStats:
        with self._lock:
            self._check_open()
            now = self._clock()
            scopes = {
                name: ScopeStats(len(b.records), sum(len(k.encode()) + len(r.data) for k, r in b.records.items()))
                for name, b in self._scopes.items()
            }
            expired = sum(not is_live(r.expires_at, now) for b in self._scopes.values() for r in b.records.values())
            groups, items, changes, stream_bytes = self._stream_stats()
            queued = sum(len(p.new.payload) for p in self._deliveries.values())
            dead = sum(len(letter.payload) + len(letter.error) for letter in self._dead.values())
            keys = sum(s.bytes or 0 for s in scopes.values())
            size = {"keys": keys, "deliveries": queued, "dead_letters": dead, "streams": stream_bytes}
            return StoreStats(
                scopes, expired, len(self._events), len(self._deliveries), len(self._dead),
                len(self._subscriptions) + len(self._stream_subscriptions), len(self._steps_seen),
                groups, items, changes, {"total": sum(size.values()), **size},
            )  # fmt: skip
