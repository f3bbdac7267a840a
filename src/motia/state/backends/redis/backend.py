"""``RedisBackend``: one store shared by many processes on many machines (``pymotia[redis]``).

Every operation is one call of a Redis *function* from the library in ``functions.lua`` (loaded
with ``FUNCTION LOAD REPLACE``, which Redis keeps in its RDB/AOF like data), so each write, its change
event and its delivery bookkeeping happen atomically on the server in one round trip.

What is supported: one standalone Redis server, 7.0 or newer (a primary; while a failover promotes a
replica at the same address, calls are retried). Redis Cluster is not: the client is not cluster-aware
(it would get ``MOVED`` replies), so a cluster node is refused at start-up with a clear error. The key
layout is ready for it (:mod:`~motia.state.backends.redis.keys`); a Cluster backend would also need
``redis.asyncio.RedisCluster`` routing each call by the ``{P}`` tag, the function library loaded on every
primary (and again after a failover or resharding), and tests against a real cluster.

Why update is compare-and-set instead of a Lua implementation of the update operations: Redis's Lua
JSON (cjson) reads every number as a double (large ints and exact floats would change) and cannot tell
``[]`` from ``{}``. So ``update`` applies the operations in Python, exactly as the other backends do,
and writes with ``motia1_cas``, which succeeds only if the key still holds the record it started from
(version *and* write token, so a delete and re-create in between is caught). On a mismatch the call
returns the current record, so a retry costs one round trip; recently read records are kept as hints,
so a ``get`` followed by an ``update`` (or updates in a row) usually take one round trip each.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson

from motia.exceptions import ConfigError, StateError
from motia.state.backends._writes import (
    check_age,
    check_lease,
    check_lease_ttl,
    check_limit,
    check_steps,
    check_version,
    is_live,
    orphaned_error,
    plan_update,
)
from motia.state.backends.base import StateBackend
from motia.state.backends.redis.client import RedisClient, _import_redis
from motia.state.backends.redis.keys import due_key, meta_key, steps_key, tick_key, values_key
from motia.state.backends.redis.operate import RedisOperations, dead_letter_of
from motia.state.backends.redis.stats import RedisStats
from motia.state.backends.redis.streams import RedisStreams
from motia.state.backends.types import (
    DeadLetter,
    Delivery,
    NewDelivery,
    PruneResult,
    Record,
    Subscription,
    TransactionWrite,
    WriteResult,
    tick_millis,
)
from motia.state.masking import mask_url
from motia.state.ops import Operation

#: Records of at most this many bytes are remembered as compare-and-set hints, up to HINT_BYTES in all.
HINT_VALUE_BYTES = 16 * 1024
HINT_BYTES = 8 * 1024 * 1024
#: Expired keys removed per purge call (each call blocks the server while it runs).
PURGE_BATCH = 1000
#: Stream groups one call of the stream retention visits (an HSCAN step; each call is one atomic function).
PRUNE_GROUPS = 100
#: Deliveries completed per function call of ``complete_many`` (each call blocks the server while it runs).
COMPLETE_CHUNK = 500
#: A lease's key outlives its ttl by this long (seconds, server time) before Redis deletes it: expiry is
#: judged by the clients' clocks, so a client clock behind the server's by less than this never sees a
#: lease it should still respect disappear. Only leases nobody released wait this long.
LEASE_KEEP = 600.0

_OPTIONS = {"prefix", "timeout"}


class _Hints:
    """Recently seen records, as starting points for compare-and-set. Only ever a hint: the server
    checks version and token, so a stale hint costs a retry, never a lost update."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: OrderedDict[tuple[str, str], tuple[Record, bytes]] = OrderedDict()
        self._bytes = 0

    def get(self, scope: str, key: str) -> tuple[Record, bytes] | None:
        with self._lock:
            return self._records.get((scope, key))

    def put(self, scope: str, record: Record, token: bytes) -> None:
        if len(record.data) > HINT_VALUE_BYTES:
            self.forget(scope, record.key)
            return
        with self._lock:
            previous = self._records.pop((scope, record.key), None)
            if previous is not None:
                self._bytes -= len(previous[0].data)
            self._records[(scope, record.key)] = (record, token)
            self._bytes += len(record.data)
            while self._bytes > HINT_BYTES:
                _, (old, _) = self._records.popitem(last=False)
                self._bytes -= len(old.data)

    def forget(self, scope: str, key: str) -> None:
        with self._lock:
            previous = self._records.pop((scope, key), None)
            if previous is not None:
                self._bytes -= len(previous[0].data)


def _parse(key: str, raw: bytes) -> tuple[Record, bytes]:
    version, expires_at, token, data = raw.split(b"|", 3)
    return Record(key, data, int(version), float(expires_at) if expires_at else None), token


def _conflict(scope: str, key: str, expected: int, actual: int) -> None:
    check_version(scope, key, Record(key, b"", actual, None) if actual else None, expected)


def _time(seconds: float) -> str:
    return repr(float(seconds))


class RedisBackend(RedisStats, RedisStreams, RedisOperations, StateBackend):
    """State in a Redis server, 7.0 or newer (the store is a Redis function library)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "motia",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        redis = _import_redis()
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - _OPTIONS)
        if unknown:
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for state URL {mask_url(url)!r} (known: prefix, timeout)"
            )
        prefix = query.get("prefix", prefix)
        try:
            timeout = float(query.get("timeout", timeout))
        except ValueError:
            raise ConfigError(f"invalid state URL {mask_url(url)!r}: timeout must be a number of seconds") from None
        if not prefix or "{" in prefix or "}" in prefix:
            raise ConfigError(f"invalid Redis key prefix {prefix!r}: it must be non-empty, without braces")
        if not timeout > 0:
            raise ConfigError(f"invalid state URL {mask_url(url)!r}: timeout must be positive")
        self.prefix = prefix
        self.timeout = timeout
        self._clock = clock
        self._connect_url = parts._replace(query="").geturl()
        options: dict[str, Any] = {}
        if prefix != "motia":
            options["prefix"] = prefix
        if timeout != 10.0:
            options["timeout"] = f"{timeout:g}"
        self.url = mask_url(self._connect_url) + (f"?{urlencode(options)}" if options else "")
        self._hints = _Hints()
        self._events_here = False  # this process enabled events: wake local workers after writes
        self._client = client = RedisClient(
            redis, self._connect_url, url=self.url, timeout=timeout, meta=meta_key(prefix)
        )
        # The client's calls under the names the store's methods use (bound once: no extra call per command).
        self._call = client.call
        self._write = client.write
        self._command = client.command
        self._token = client.token
        client.check_server()

    def _wrote(self) -> None:
        if self._events_here:
            self._notify_listeners()

    # -- state ------------------------------------------------------------------------------------

    async def get(self, scope: str, key: str) -> Record | None:
        # A plain HGET: a read needs no script. Only a key found expired goes through motia1_get,
        # which removes it and fires its "expired" event atomically.
        raw = await self._command("HGET", values_key(self.prefix, scope), key)
        if raw is None:
            self._hints.forget(scope, key)
            return None
        record, token = _parse(key, raw)
        if record.expires_at is not None and record.expires_at <= self._clock():
            live, token = await self._fetch(scope, key)
            self._wrote()
            if live is None:
                self._hints.forget(scope, key)
                return None
            record = live  # another process wrote it again since our read
        self._hints.put(scope, record, token)
        return record

    async def set(self, scope: str, key: str, data: bytes, *, ttl: float | None, if_version: int | None) -> WriteResult:
        now = self._clock()
        token = self._token()
        expires_at = now + ttl if ttl is not None else None
        reply = await self._write(
            "motia1_set",
            token,
            scope,
            key,
            data,
            "" if expires_at is None else _time(expires_at),
            "" if if_version is None else if_version,
            _time(now),
        )
        if reply[0] == 0:
            _conflict(scope, key, if_version or 0, int(reply[1]))
        self._wrote()
        version = int(reply[1])
        self._hints.put(scope, Record(key, data, version, expires_at), token.encode())
        return WriteResult(reply[2] if reply[0] == 1 else None, data, version)

    async def _fetch(self, scope: str, key: str) -> tuple[Record | None, bytes]:
        raw = await self._call("motia1_get", scope, key, _time(self._clock()))
        if raw is None:
            return None, b""
        return _parse(key, raw)

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
        hint = self._hints.get(scope, key)
        fresh = hint is None
        current, token = (None, b"") if hint is None else hint
        if fresh:
            current, token = await self._fetch(scope, key)
        while True:
            now = self._clock()
            if current is not None and not is_live(current.expires_at, now):
                current, token = None, b""
            try:
                record, result = plan_update(scope, key, current, operations, ttl, if_version, max_value_bytes, now)
            except StateError:
                if fresh:
                    raise
                current, token = await self._fetch(scope, key)  # judge against the stored value, not a hint
                fresh = True
                continue
            if record is None:  # no operations: report what is stored now
                if fresh:
                    return result
                current, token = await self._fetch(scope, key)
                fresh = True
                continue
            new_token = self._token()
            reply = await self._write(
                "motia1_cas",
                new_token,
                scope,
                key,
                0 if current is None else current.version,
                token,
                record.data,
                "" if record.expires_at is None else _time(record.expires_at),
                _time(now),
            )
            if reply[0] != 0:
                self._wrote()
                self._hints.put(scope, record, new_token.encode())
                return result
            current, token = (None, b"") if reply[1] is None else _parse(key, reply[1])
            fresh = True

    async def delete(self, scope: str, key: str, *, if_version: int | None) -> bytes | None:
        reply = await self._write(
            "motia1_delete", self._token(), scope, key, "" if if_version is None else if_version, _time(self._clock())
        )
        self._hints.forget(scope, key)
        if reply[0] == 0:
            _conflict(scope, key, if_version or 0, int(reply[1]))
        self._wrote()
        old: bytes | None = reply[1]
        return old

    async def clear(self, scope: str) -> int:
        removed = int(await self._write("motia1_clear", self._token(), scope, _time(self._clock())))
        self._wrote()
        return removed

    async def values(self, scope: str) -> list[bytes]:
        return [record.data for record in await self.items(scope, prefix=None, after=None, limit=None)]

    async def items(self, scope: str, *, prefix: str | None, after: str | None, limit: int | None) -> list[Record]:
        if limit == 0:
            return []
        # "surrogatepass": a lone surrogate (no stored key has one) encodes to bytes that sort where its code
        # point does, so a bound holding one still orders right and a prefix holding one matches nothing.
        low = b"-" if after is None else b"(" + after.encode("utf-8", "surrogatepass")
        high = b"+"
        if prefix:
            if after is None or after < prefix:
                low = b"[" + prefix.encode("utf-8", "surrogatepass")
            high = b"(" + prefix.encode("utf-8", "surrogatepass") + b"\xff"  # never in UTF-8: above all with prefix
        reply = await self._call("motia1_items", scope, low, high, limit or 0, _time(self._clock()))
        records = []
        for position in range(0, len(reply), 2):
            record, _ = _parse(reply[position].decode(), reply[position + 1])
            records.append(record)
        return records

    async def count(self, scope: str) -> int:
        return int(await self._call("motia1_count", scope, _time(self._clock())))

    async def scopes(self) -> list[str]:
        return [scope.decode() for scope in await self._call("motia1_scopes", _time(self._clock()))]

    async def purge_expired(self) -> int:
        removed = 0
        while True:
            batch = int(await self._call("motia1_purge", _time(self._clock()), PURGE_BATCH))
            removed += batch
            if batch < PURGE_BATCH:
                break
        if removed:
            self._wrote()
        return removed

    async def commit(self, expected: Mapping[tuple[str, str], int], writes: Sequence[TransactionWrite]) -> None:
        now = self._clock()
        args: list[Any] = [_time(now), len(expected)]
        for (scope, key), version in expected.items():
            args += (scope, key, version)
        args.append(len(writes))
        for write in writes:
            if write.data is None:
                args += (write.scope, write.key, "d", b"", "")
            elif write.ttl is not None:
                args += (write.scope, write.key, "t", write.data, _time(now + write.ttl))
            else:
                args += (write.scope, write.key, "k" if write.keep_expiry else "p", write.data, "")
        reply = await self._write("motia1_commit", self._token(), *args)
        for scope, key in expected:
            self._hints.forget(scope, key)
        if reply[0] == 0:
            _conflict(reply[1].decode(), reply[2].decode(), int(reply[3]), int(reply[4]))
        self._wrote()

    async def restore(
        self, scope: str, key: str, data: bytes, *, version: int | None, expires_at: float | None, replace: bool
    ) -> bool:
        done = await self._write(
            "motia1_restore",
            self._token(),
            scope,
            key,
            data,
            "" if version is None else version,
            "" if expires_at is None else _time(expires_at),
            "1" if replace else "0",
            _time(self._clock()),
        )
        self._hints.forget(scope, key)
        self._wrote()
        return bool(done)

    # -- delivery ---------------------------------------------------------------------------------

    async def enable_events(self) -> None:
        await self._call("motia1_enable_events")
        self._events_here = True

    async def dispatch_events(self, subscriptions: Sequence[Subscription], *, limit: int = 1000) -> int:
        encoded = [orjson.dumps([s.step, s.scope, s.key]) for s in subscriptions]
        consumed, added = await self._call("motia1_dispatch", limit, _time(self._clock()), *encoded)
        if added:
            self._notify_listeners()
        return int(consumed)

    async def enqueue(self, deliveries: Sequence[NewDelivery]) -> int:
        if not deliveries:
            return 0
        now = self._clock()
        args: list[Any] = [_time(now)]
        for new in deliveries:
            args += (
                new.id,
                new.step,
                new.kind,
                new.payload,
                new.order_key or "",
                _time(now + new.delay),
                new.order_slots,
            )
        added = int(await self._call("motia1_enqueue", *args))
        if added:
            self._notify_listeners()
        return added

    async def claim(self, steps: Sequence[str], *, owner: str, limit: int, lease: float) -> list[Delivery]:
        if not steps or limit <= 0:
            return []
        # A token, as for writes: a retried claim (its reply lost) returns what the first attempt leased.
        reply = await self._write(
            "motia1_claim", self._token(), owner, limit, _time(lease), _time(self._clock()), *steps
        )
        return [
            Delivery(
                reply[i].decode(),
                reply[i + 1].decode(),
                reply[i + 2].decode(),
                reply[i + 3],
                int(reply[i + 4]),
                float(reply[i + 5]),
            )
            for i in range(0, len(reply), 6)
        ]

    async def next_due(self, steps: Sequence[str]) -> float | None:
        # A due set scores each delivery by when it is claimable (a leased one: its lease's end); the ones
        # waiting behind an older one of their order key are not in it (they wait for a settling commit).
        now = self._clock()
        times: list[float] = []
        for step in dict.fromkeys(steps):
            reply = await self._command(
                "ZRANGE", due_key(self.prefix, step), f"({_time(now)}", "+inf", "BYSCORE", "LIMIT", 0, 1, "WITHSCORES"
            )
            if reply:
                times.append(float(reply[1]))
        return min(times) - now if times else None

    async def extend(self, ids: Sequence[str], *, owner: str, lease: float) -> None:
        if ids:
            await self._call("motia1_extend", owner, _time(self._clock() + lease), *ids)

    async def _settle(self, delivery_id: str, owner: str, outcome: str, delay: float, error: str) -> bool:
        now = self._clock()
        # An exception's text may hold lone surrogates (a file name decoded with surrogateescape): keep
        # them visible as escapes rather than fail to settle the delivery.
        error = error.encode("utf-8", "backslashreplace").decode()
        done = bool(
            await self._call("motia1_settle", delivery_id, owner, outcome, _time(now + delay), error, _time(now))
        )
        if done and outcome not in ("retry", "postpone"):
            self._notify_listeners()  # a later delivery of the same key may be ready now
        return done

    async def complete(self, delivery_id: str, *, owner: str) -> bool:
        return await self._settle(delivery_id, owner, "complete", 0.0, "")

    async def complete_many(self, delivery_ids: Sequence[str], *, owner: str) -> builtins.set[str]:
        ids = list(dict.fromkeys(delivery_ids))
        if not ids:
            return set()
        done: builtins.set[str] = set()
        for start in range(0, len(ids), COMPLETE_CHUNK):  # one function call per chunk, not one per delivery
            chunk = ids[start : start + COMPLETE_CHUNK]
            removed = await self._call("motia1_complete_many", owner, _time(self._clock()), *chunk)
            done.update(item.decode() if isinstance(item, bytes) else item for item in removed)
        if done:
            self._notify_listeners()  # later deliveries of the same keys may be ready now
        return done

    async def retry(self, delivery_id: str, *, owner: str, delay: float, error: str) -> bool:
        return await self._settle(delivery_id, owner, "retry", delay, error)

    async def postpone(self, delivery_id: str, *, owner: str, delay: float) -> bool:
        return await self._settle(delivery_id, owner, "postpone", delay, "")

    async def dead_letter(self, delivery_id: str, *, owner: str, error: str) -> bool:
        return await self._settle(delivery_id, owner, "dead", 0.0, error)

    async def dead_letters(self, step: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        return [dead_letter_of(raw) for raw in await self._call("motia1_dead", step or "", "", "", "", limit)]

    async def add_dead_letters(self, deliveries: Sequence[NewDelivery], *, error: str) -> int:
        if not deliveries:
            return 0
        now = _time(self._clock())
        args: list[Any] = [now, error.encode("utf-8", "backslashreplace").decode()]
        for new in deliveries:
            args += (new.id, new.step, new.kind, new.payload)
        return int(await self._call("motia1_add_dead", *args))

    async def pending_by_step(self) -> dict[str, int]:
        reply = await self._call("motia1_pending_all")
        return {reply[i].decode(): int(reply[i + 1]) for i in range(0, len(reply), 2) if int(reply[i + 1]) > 0}

    async def pending(self, step: str | None = None) -> int:
        return int(await self._call("motia1_pending", step or ""))

    async def claim_tick(self, job: str, tick: float, *, hold: float) -> bool:
        name = tick_key(self.prefix, job, tick_millis(tick))
        token = self._token()
        if await self._command("SET", name, token, "NX", "PX", max(1, round(hold * 1000))) is not None:
            return True
        # Taken: by another instance, or by this very call if its reply was lost and the SET was retried.
        return bool(await self._command("GET", name) == token.encode())

    async def acquire_lease(self, name: str, owner: str, *, ttl: float) -> bool:
        check_lease(name, owner)
        ttl = check_lease_ttl(ttl)
        now = self._clock()
        keep = max(1, round((ttl + LEASE_KEEP) * 1000))
        return bool(
            await self._write("motia1_acquire_lease", self._token(), name, owner, _time(now), _time(now + ttl), keep)
        )

    async def release_lease(self, name: str, owner: str) -> bool:
        check_lease(name, owner)
        return bool(await self._write("motia1_release_lease", self._token(), name, owner, _time(self._clock())))

    async def touch_steps(self, steps: Sequence[str]) -> None:
        names = check_steps(steps)
        if names:
            now = _time(self._clock())
            await self._command("ZADD", steps_key(self.prefix), "GT", *(part for step in names for part in (now, step)))

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
            capped = PURGE_BATCH
            while capped == PURGE_BATCH:  # a batch per call: the server serves others in between
                capped = int(await self._call("motia1_cap_dead", dead_letter_limit, PURGE_BATCH))
                result = result._replace(dead_letters=result.dead_letters + capped)
        if stream_age is None:
            return result
        changes, groups = await self._prune_streams(self._clock() - stream_age)
        return result._replace(stream_changes=changes, stream_groups=groups)

    async def _prune_deliveries(self, dead_letter_age: float | None, step_age: float | None) -> PruneResult:
        dead_letter_age = check_age("dead_letter_age", dead_letter_age)
        step_age = check_age("step_age", step_age)
        if dead_letter_age is None and step_age is None:
            return PruneResult(0, 0, 0)
        now = self._clock()
        stale: list[Any] = []
        if step_age is not None:
            # The error text needs each step's last-seen time, formatted here; the function checks again
            # that each step is still stale, so a step touched in between is kept.
            reply = await self._command(
                "ZRANGE", steps_key(self.prefix), "-inf", f"({_time(now - step_age)}", "BYSCORE", "WITHSCORES"
            )
            for position in range(0, len(reply), 2):
                step = reply[position].decode()
                stale += (step, orphaned_error(step, float(reply[position + 1])))
        removed, forgotten, orphaned = await self._write(
            "motia1_prune",
            self._token(),
            _time(now),
            "" if dead_letter_age is None else _time(now - dead_letter_age),
            "" if step_age is None else _time(now - step_age),
            *stale,
        )
        if orphaned:
            self._notify_listeners()
        return PruneResult(int(removed), int(forgotten), int(orphaned))

    async def _prune_streams(self, cut: float) -> tuple[int, int]:
        """The stream part of :meth:`prune`: an ``HSCAN`` over the groups, :data:`PRUNE_GROUPS` per call."""
        cursor, changes, groups = b"0", 0, 0
        while True:
            cursor, removed, forgotten = await self._call("motia1_prune_streams", cursor, _time(cut), PRUNE_GROUPS)
            changes += int(removed)
            groups += int(forgotten)
            if cursor == b"0":
                return changes, groups

    # -- lifecycle --------------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._client.aclose()
