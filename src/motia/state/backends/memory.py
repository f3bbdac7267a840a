"""In-process state: for tests and throwaway runs. Nothing survives the process, by design.

Thread- and task-safe (one lock, never held across an ``await``), so it can back the synchronous twin
and sync handlers too. Values are kept encoded, so ``get`` always returns a fresh object and the store
enforces exactly the same limits as the durable backends. Keys are kept sorted per scope, so a page of
``items`` costs the page plus a binary search.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence

from motia.exceptions import StateClosedError
from motia.state.backends._writes import check_version, is_live, plan_set, plan_update
from motia.state.backends.base import Record, StateBackend, WriteResult
from motia.state.ops import Operation
from motia.state.values import prefix_upper_bound


class _Scope:
    __slots__ = ("records", "sorted_keys")

    def __init__(self) -> None:
        self.records: dict[str, Record] = {}
        self.sorted_keys: list[str] = []

    def put(self, record: Record) -> None:
        if record.key not in self.records:
            bisect.insort(self.sorted_keys, record.key)
        self.records[record.key] = record

    def remove(self, key: str) -> None:
        del self.records[key]
        del self.sorted_keys[bisect.bisect_left(self.sorted_keys, key)]


class MemoryBackend(StateBackend):
    """A private in-memory store; each instance (each ``memory://`` URL opened) is independent."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.url = "memory://"
        self._clock = clock
        self._lock = threading.Lock()
        self._scopes: dict[str, _Scope] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StateClosedError("the memory:// state store is closed")

    def _live(self, scope: str, key: str, now: float) -> Record | None:
        bucket = self._scopes.get(scope)
        if bucket is None:
            return None
        record = bucket.records.get(key)
        if record is None:
            return None
        if not is_live(record.expires_at, now):
            self._remove(scope, bucket, key)
            return None
        return record

    def _remove(self, scope: str, bucket: _Scope, key: str) -> None:
        bucket.remove(key)
        if not bucket.records:
            del self._scopes[scope]

    def _put(self, scope: str, record: Record) -> None:
        bucket = self._scopes.get(scope)
        if bucket is None:
            bucket = self._scopes[scope] = _Scope()
        bucket.put(record)

    async def get(self, scope: str, key: str) -> Record | None:
        with self._lock:
            self._check_open()
            return self._live(scope, key, self._clock())

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        with self._lock:
            self._check_open()
            now = self._clock()
            record, result = plan_set(scope, key, self._live(scope, key, now), data, ttl, if_version, now)
            self._put(scope, record)
            return result

    async def update(
        self,
        scope: str,
        key: str,
        operations: Sequence[Operation],
        *,
        ttl: float | None,
        if_version: int | None,
        max_value_bytes: int,
    ) -> WriteResult:
        with self._lock:
            self._check_open()
            now = self._clock()
            current = self._live(scope, key, now)
            record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, now)
            if record is not None:
                self._put(scope, record)
            return result

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        with self._lock:
            self._check_open()
            current = self._live(scope, key, self._clock())
            check_version(scope, key, current, if_version)
            if current is None:
                return None
            self._remove(scope, self._scopes[scope], key)
            return current.data

    async def clear(self, scope: str) -> int:
        with self._lock:
            self._check_open()
            bucket = self._scopes.pop(scope, None)
            if bucket is None:
                return 0
            now = self._clock()
            return sum(1 for record in bucket.records.values() if is_live(record.expires_at, now))

    async def values(self, scope: str) -> list[bytes]:
        return [record.data for record in await self.items(scope, prefix=None, after=None, limit=None)]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        with self._lock:
            self._check_open()
            bucket = self._scopes.get(scope)
            if bucket is None or limit == 0:
                return []
            now = self._clock()
            keys = bucket.sorted_keys
            start = bisect.bisect_right(keys, after) if after is not None else 0
            if prefix:
                start = max(start, bisect.bisect_left(keys, prefix))
                upper = prefix_upper_bound(prefix)
                stop = bisect.bisect_left(keys, upper) if upper is not None else len(keys)
            else:
                stop = len(keys)
            page: list[Record] = []
            for position in range(start, stop):
                record = bucket.records[keys[position]]
                if is_live(record.expires_at, now):
                    page.append(record)
                    if limit is not None and len(page) >= limit:
                        break
            return page

    async def count(self, scope: str) -> int:
        with self._lock:
            self._check_open()
            bucket = self._scopes.get(scope)
            if bucket is None:
                return 0
            now = self._clock()
            return sum(1 for record in bucket.records.values() if is_live(record.expires_at, now))

    async def scopes(self) -> list[str]:
        with self._lock:
            self._check_open()
            now = self._clock()
            return sorted(
                name
                for name, bucket in self._scopes.items()
                if any(is_live(record.expires_at, now) for record in bucket.records.values())
            )

    async def purge_expired(self) -> int:
        with self._lock:
            self._check_open()
            now = self._clock()
            removed = 0
            for name, bucket in list(self._scopes.items()):
                for key in [k for k, r in bucket.records.items() if not is_live(r.expires_at, now)]:
                    self._remove(name, bucket, key)
                    removed += 1
            return removed

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._scopes.clear()
