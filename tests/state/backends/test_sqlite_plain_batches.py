"""A group-committed batch of sets and updates while events are off skips the transaction's per-call bookkeeping
(issue 15, :mod:`motia.state.backends.sqlite.plain`). It must answer every caller exactly as the transaction
path does (results, versions, expiry, errors, one call failing alone) and leave the same rows; and it must never
run once events are on, in this process or another."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from motia import StateManager
from motia.state.backends.base import Subscription
from motia.state.backends.sqlite import SQLiteBackend, plain
from motia.state.backends.types import Record
from tests.state.backends._batches import deferred, stored_rows, together

INCREMENT = [{"type": "increment", "path": "n", "value": 1}]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def spy_plain(backend: SQLiteBackend, *, disable: bool = False) -> list[bool]:
    """Record, per batch offered to the plain path, whether it ran there (``disable``: never let it run)."""
    taken: list[bool] = []
    run_plain = backend._run_plain

    def recording(*args: Any) -> list[Any] | None:
        outcomes = None if disable else run_plain(*args)
        taken.append(outcomes is not None)
        return outcomes

    backend._run_plain = recording  # type: ignore[method-assign,assignment]
    return taken


def spy_form(monkeypatch: pytest.MonkeyPatch, name: str) -> list[bool]:
    """Record, per batch offered to the form ``plain.<name>``, whether it took the batch (answered, not ``None``)."""
    taken: list[bool] = []
    form = getattr(plain, name)

    def spying(connection: Any, calls: Any, now: float) -> list[Any] | None:
        outcomes = form(connection, calls, now)
        taken.append(outcomes is not None)
        return outcomes

    monkeypatch.setattr(plain, name, spying)
    return taken


#: What a scenario (``scripted`` and its kin) returns: the outcomes, the entries left, the raw rows left (expired
#: ones included) and, per batch, whether it took the plain path.
Run = tuple[list[Any], list[Any], list[Any], list[bool]]


async def both_ways(tmp_path: Path, scenario: Callable[..., Awaitable[Run]]) -> tuple[list[Any], list[Any], list[Any]]:
    """Run ``scenario`` (``scripted`` and its kin) once with the plain path and once through the transaction only;
    check that its batch took the plain path only in the first, and that both runs gave every caller the same
    answer, errors included, and left the same raw rows; return the first run's outcomes, entries and rows."""
    fast = await scenario(f"sqlite:///{tmp_path}/fast.db", tmp_path / "fast.db", plain=True)
    slow = await scenario(f"sqlite:///{tmp_path}/slow.db", tmp_path / "slow.db", plain=False)
    assert fast[3] == [True] and slow[3] == [False]
    assert fast[:3] == slow[:3]
    return fast[0], fast[1], fast[2]


def setting(state: StateManager, sign: int) -> list[Callable[[], Awaitable[Any]]]:
    """Five sets of keys ``k1`` .. ``k5`` to ``sign * i``."""
    return [functools.partial(state.set, "s", f"k{i}", sign * i) for i in range(1, 6)]


async def scripted(url: str, path: Path, *, plain: bool) -> Run:
    """One scripted batch over keys live, expired, absent and conflicting; its outcomes, the entries left,
    the raw rows left (expired ones included) and which batches took the plain path."""
    clock = Clock()
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "a", {"n": 1})
        await state.set("s", "expired", {"n": 5}, ttl=5)
        await state.set("s", "gone", {"n": 6}, ttl=5)
        await state.set("s", "list", [1, 2])
        await state.set("s", "versioned", "v1")
        clock.now += 10  # "expired" and "gone" are past their ttl, still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        outcomes = await together(
            [
                lambda: state.set("s", "a", {"n": 2}),
                lambda: state.update("s", "a", INCREMENT),
                lambda: state.set("s", "expired", {"n": 50}),
                lambda: state.update("s", "gone", []),  # nothing to write: the expired row is removed
                lambda: state.update("s", "list", INCREMENT),  # fails alone: not an object
                lambda: state.set("s", "versioned", "no", if_version=99),  # fails alone: a conflict
                lambda: state.set("s", "versioned", "v2", if_version=1),
                lambda: state.update("s", "fresh", INCREMENT),
                lambda: state.update("s", "fresh", INCREMENT, ttl=30),
                lambda: state.set("s", "a", {"n": 9}, ttl=60),
            ]
        )
        entries = [(e.key, e.value, e.version, e.expires_at) for e in await state.items("s")]
    return outcomes, entries, stored_rows(path), taken


async def test_a_plain_batch_answers_and_writes_as_the_transaction_does(tmp_path: Path) -> None:
    # Given the same script run once with the plain path and once through the transaction only (both_ways checks
    # that the plain path ran, the first write of the round committing inline and the other nine being one batch,
    # and that every caller got the same answer, errors included, and the same rows are left)
    outcomes, entries, rows = await both_ways(tmp_path, scripted)
    # Then the answers are the transaction's
    assert outcomes[1] == ({"n": 2}, {"n": 3}, 3)  # sees the set before it in the batch
    assert outcomes[2] == (None, {"n": 50}, 1)  # an expired key counts as absent
    assert outcomes[4][0] == "InvalidUpdateError" and outcomes[5][0] == "StateConflictError"
    assert outcomes[8] == ({"n": 1}, {"n": 2}, 2)
    assert ("s", "gone") not in [(scope, key) for scope, key, *_ in rows]
    assert entries[0] == ("a", {"n": 9}, 4, 1_000_070.0)


async def updates(url: str, path: Path, *, plain: bool) -> Run:
    """A batch of updates (most of them the common form a plain batch plans without ``plan_update``: no
    ``if_version``, some operations) over keys live with and without an expiry, expired and absent, with ttls,
    failures and one conditional update among them; its outcomes, entries, raw rows, and which path ran."""
    clock = Clock()
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600, max_value_bytes=64) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "lasting", {"n": 1})
        await state.set("s", "expiring", {"n": 1}, ttl=100)
        await state.set("s", "expired", {"n": 1, "old": True}, ttl=5)
        await state.set("s", "text", "not an object")
        clock.now += 10  # "expired" is past its ttl, still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        outcomes = await together(
            [
                lambda: state.update("s", "lasting", INCREMENT),
                lambda: state.update("s", "expiring", INCREMENT),  # keeps its expiry
                lambda: state.update("s", "expired", INCREMENT),  # counts as absent: starts from {}
                lambda: state.update("s", "absent", [{"type": "decrement", "path": "n", "by": 2}]),
                lambda: state.update("s", "text", INCREMENT),  # fails alone: not an object
                lambda: state.update("s", "lasting", [{"type": "set", "path": "big", "value": "x" * 80}]),  # too big
                lambda: state.update("s", "lasting", INCREMENT, if_version=2),  # sees the first update's version
                lambda: state.update("s", "expiring", INCREMENT, ttl=30),  # a new expiry
                lambda: state.update(
                    "s", "lasting", [{"type": "increment", "path": "n", "value": 0.5}, {"type": "delete", "path": "n"}]
                ),
                lambda: state.update("s", "lasting", INCREMENT, if_version=2),  # fails alone: a conflict
            ]
        )
        entries = [(e.key, e.value, e.version, e.expires_at) for e in await state.items("s")]
    return outcomes, entries, stored_rows(path), taken


async def test_a_plain_batch_of_updates_answers_and_writes_as_the_transaction_does(tmp_path: Path) -> None:
    # Given the same updates run once with the plain path and once through the transaction only
    outcomes, entries, _ = await both_ways(tmp_path, updates)
    # Then every caller got the same answer, errors included, and the same rows are left
    assert outcomes[0] == ({"n": 1}, {"n": 2}, 2)  # the first commits inline (a lone write)
    assert outcomes[1] == ({"n": 1}, {"n": 2}, 2)
    assert outcomes[2] == (None, {"n": 1}, 1)
    assert outcomes[3] == (None, {"n": -2}, 1)
    assert outcomes[4][0] == "InvalidUpdateError" and outcomes[5][0] == "StateValueError"
    assert outcomes[6] == ({"n": 2}, {"n": 3}, 3)
    assert outcomes[7] == ({"n": 2}, {"n": 3}, 3)
    assert outcomes[8] == ({"n": 3}, {}, 4)
    assert outcomes[9][0] == "StateConflictError"
    assert entries == [
        ("absent", {"n": -2}, 1, None),
        ("expired", {"n": 1}, 1, None),
        ("expiring", {"n": 3}, 3, 1_000_040.0),
        ("lasting", {}, 4, None),
        ("text", "not an object", 1, None),
    ]


async def distinct_updates(url: str, path: Path, *, plain: bool) -> Run:
    """A batch of 148 updates of distinct keys of one scope, none with a ttl or ``if_version`` (what many tasks
    updating keys make), more than one multi-row upsert holds: keys live with and without an expiry, expired and
    absent, and plans that fail on each kind (a value too big for ``max_value_bytes``, a number expected); what
    ``scripted`` returns."""
    clock = Clock()
    big = [{"type": "set", "path": "big", "value": "x" * 80}]
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600, max_value_bytes=64) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        for key in ("live", "live-big"):
            await state.set("s", key, {"n": 1})
        await state.set("s", "expiring", {"n": 1}, ttl=100)
        for key in ("expired", "expired-big"):
            await state.set("s", key, {"n": 1, "old": True}, ttl=5)
        await state.set("s", "text", "not an object")
        for index in range(0, 140, 2):
            await state.set("s", f"n{index}", {"n": index})
        clock.now += 10  # the ttl of 5 is past: still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        calls = [
            functools.partial(state.update, "s", "live", INCREMENT),
            functools.partial(state.update, "s", "expiring", INCREMENT),  # keeps its expiry
            functools.partial(state.update, "s", "expired", INCREMENT),  # counts as absent: starts from {}
            functools.partial(state.update, "s", "absent", [{"type": "decrement", "path": "n", "by": 2}]),
            functools.partial(state.update, "s", "text", INCREMENT),  # fails alone: not an object
            functools.partial(state.update, "s", "live-big", big),  # fails alone: too big
            functools.partial(state.update, "s", "expired-big", big),  # fails alone, from {}: the row goes
            functools.partial(state.update, "s", "absent-big", big),  # fails alone, from {}: nothing is left
            *(functools.partial(state.update, "s", f"n{index}", INCREMENT) for index in range(140)),
        ]
        outcomes = await together([functools.partial(state.set, "s", "first", 0), *calls])
        entries = [(e.key, e.value, e.version, e.expires_at) for e in await state.items("s")]
    return outcomes, entries, stored_rows(path), taken


async def test_a_batch_of_distinct_updates_is_planned_inside_its_upsert_as_the_transaction_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of updates of distinct keys of one scope, run once with the plain path and once through the
    # transaction only
    simple = spy_form(monkeypatch, "_run_simple_updates")
    outcomes, entries, _ = await both_ways(tmp_path, distinct_updates)
    # Then the batch was planned inside its upsert
    assert simple == [True]
    # And every caller got the same answer, errors included, and the same rows are left (expired ones too)
    assert outcomes[1] == ({"n": 1}, {"n": 2}, 2)
    assert outcomes[3] == (None, {"n": 1}, 1)
    assert outcomes[4] == (None, {"n": -2}, 1)
    assert outcomes[5][0] == "InvalidUpdateError"
    assert [outcome[0] for outcome in outcomes[6:9]] == ["StateValueError"] * 3
    assert outcomes[9] == ({"n": 0}, {"n": 1}, 2) and outcomes[10] == (None, {"n": 1}, 1)
    keys = {entry[0]: entry for entry in entries}
    assert keys["expiring"] == ("expiring", {"n": 2}, 2, 1_000_100.0)
    assert keys["text"] == ("text", "not an object", 1, None) and keys["live-big"] == ("live-big", {"n": 1}, 1, None)
    assert "expired-big" not in keys and "absent-big" not in keys


async def test_a_plain_batch_is_never_used_once_events_are_on(sqlite_url: str) -> None:
    # Given two stores on one file, both knowing events to be off, and one writing groups of keys
    async with StateManager.from_url(sqlite_url) as writer, StateManager.from_url(sqlite_url) as app:
        assert isinstance(writer.backend, SQLiteBackend)
        taken = spy_plain(writer.backend)
        await together(setting(writer, 1))
        assert taken == [True]  # the first commits inline; the other four, a batch, took the plain path
        # When the other switches events on, and the first writes a group again (all queued: writers were
        # seen running together)
        await app.backend.enable_events()
        await together(setting(writer, -1))
        # Then the plain path declined (it saw the flag) and every write recorded its event
        assert taken == [True, False]
        assert writer.backend._events_enabled
        assert await app.backend.dispatch_events([Subscription("watcher")]) == 5
        claimed = await app.backend.claim(["watcher"], owner="w", limit=10, lease=60)
        assert sorted(orjson.loads(d.payload)["new_value"] for d in claimed) == [-5, -4, -3, -2, -1]
        # And later batches are not offered to it at all
        await together(setting(writer, 1))
        assert taken == [True, False]


async def refused(url: str, *, plain: bool) -> tuple[list[str], list[bool]]:
    async with StateManager.from_url(url) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "warm", 1)
        taken = spy_plain(backend, disable=not plain)
        results = await asyncio.gather(
            *(
                deferred(backend.set, "s", key, b"1", ttl=None, if_version=None)
                for key in ("k1", "bad\udc80", "k2", "k3")
            ),
            return_exceptions=True,
        )
        return [type(result).__name__ for result in results], taken


async def test_a_plain_batch_that_sqlite_refuses_runs_the_usual_way(tmp_path: Path) -> None:
    # Given a batch in which one key cannot be stored (a lone surrogate, passed to the backend directly)
    fast, taken = await refused(f"sqlite:///{tmp_path}/fast.db", plain=True)
    slow, _ = await refused(f"sqlite:///{tmp_path}/slow.db", plain=False)
    # Then the plain path gave the batch back, and the usual path answered it as it always has
    assert taken == [False]
    assert fast == slow
    assert fast[0] == "WriteResult" and fast[1] == "StateValueError"  # the first write committed inline


async def sets_only(url: str, path: Path, *, plain: bool) -> Run:
    """A batch of sets without ``if_version`` (written without a read, see ``plain._run_sets``) over keys live,
    expired, absent, set twice, with and without a ttl; what ``scripted`` returns."""
    clock = Clock()
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "a", {"n": 1})
        await state.set("s", "expired", {"n": 5}, ttl=5)
        await state.set("s", "lasting", {"n": 6}, ttl=500)
        await state.set("t", "a", 7)
        clock.now += 10  # "expired" is past its ttl, still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        outcomes = await together(
            [
                lambda: state.set("s", "first", 0),  # committed inline: the rest are one batch
                lambda: state.set("s", "a", {"n": 2}),
                lambda: state.set("s", "a", {"n": 3}, ttl=60),  # sees the set before it
                lambda: state.set("s", "expired", {"n": 50}),  # an expired key counts as absent
                lambda: state.set("s", "fresh", [1], ttl=30),
                lambda: state.set("s", "fresh", [2]),  # a new key set twice: its ttl is dropped
                lambda: state.set("s", "lasting", "kept"),  # no ttl given: the expiry goes
                lambda: state.set("t", "a", 8, ttl=1),
                lambda: state.set("s", "a", {"n": 4}),
            ]
        )
        entries = [(e.key, e.value, e.version, e.expires_at) for scope in ("s", "t") for e in await state.items(scope)]
    return outcomes, entries, stored_rows(path), taken


async def test_a_batch_of_sets_is_written_without_a_read_as_the_transaction_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same batch of sets run once with the plain path (its form without a read) and once through the
    # transaction only
    blind: list[int] = []
    run_sets = plain._run_sets

    def counting(connection: Any, calls: Any, now: float) -> list[Any]:
        blind.append(len(calls))
        return run_sets(connection, calls, now)

    monkeypatch.setattr(plain, "_run_sets", counting)
    outcomes, entries, _ = await both_ways(tmp_path, sets_only)
    # Then the batch of eight took the form without a read
    assert blind == [8]
    # And every caller got the same answer, and the same rows are left
    assert outcomes[1] == ({"n": 1}, {"n": 2}, 2)
    assert outcomes[2] == ({"n": 2}, {"n": 3}, 3)
    assert outcomes[3] == (None, {"n": 50}, 1)
    assert outcomes[5] == ([1], [2], 2)
    assert outcomes[8] == ({"n": 3}, {"n": 4}, 4)
    assert ("a", {"n": 4}, 4, None) in entries and ("lasting", "kept", 2, None) in entries
    assert ("a", 8, 2, 1_000_011.0) in entries


async def many_sets(url: str, path: Path, *, plain: bool) -> Run:
    """A batch of 250 sets without ``if_version``, more than one multi-row upsert holds (``plain._SET_ROWS``): 60
    keys, live, expired and absent ones, each set several times, with and without a ttl, in runs of one kind and
    one-off changes of kind; what ``scripted`` returns."""
    clock = Clock()
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        for index in range(0, 60, 3):
            await state.set("s", f"k{index}", index)
            await state.set("s", f"k{index + 1}", index, ttl=5 if index % 2 else 500)
        clock.now += 10  # the odd keys' ttl of 5 is past: still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        # 130 sets of distinct keys first (two scopes, no ttl), then keys repeating every 60 calls, a ttl on the
        # runs 180-199 and on every 7th call
        calls = [functools.partial(state.set, "s" if i % 2 else "t", f"k{i // 2}", i) for i in range(130)]
        for i in range(130, 250):
            ttl = 30 + i if 180 <= i < 200 or i % 7 == 0 else None
            calls.append(functools.partial(state.set, "s", f"k{i % 60}", {"i": i}, ttl=ttl))
        outcomes = await together([functools.partial(state.set, "s", "first", 0), *calls])
        entries = [(e.key, e.value, e.version, e.expires_at) for scope in ("s", "t") for e in await state.items(scope)]
    return outcomes, entries, stored_rows(path), taken


async def test_a_big_batch_of_sets_is_written_without_a_read_as_the_transaction_does(tmp_path: Path) -> None:
    # Given a batch of 250 sets run once with the plain path and once through the transaction only (both_ways checks
    # that it was one batch, written by the plain path, and that every caller got the same answer and the same rows
    # are left)
    outcomes, entries, _ = await both_ways(tmp_path, many_sets)
    # Then the answers are the transaction's
    assert outcomes[1 + 1] == (0, 1, 2)  # "s" k0: live, set before the batch
    assert outcomes[1 + 9] == (None, 9, 1)  # "s" k4: expired, so absent
    assert outcomes[1 + 190] == ({"i": 130}, {"i": 190}, 3)  # "s" k10: expired, then set at 21 and 130 in the batch
    assert ("k10", {"i": 190}, 3, 1_000_010.0 + 30 + 190) in entries  # the ttl of its last set


async def distinct_sets(url: str, path: Path, *, plain: bool) -> Run:
    """A batch of 150 sets of distinct keys of one scope, none with a ttl or ``if_version`` (what many tasks
    setting keys make): keys live, expired and absent; what ``scripted`` returns."""
    clock = Clock()
    async with StateManager.from_url(url, clock=clock, sweep_interval=3600) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        for index in range(0, 100, 2):
            await state.set("s", f"k{index}", index)
            await state.set("s", f"k{index + 1}", {"old": index}, ttl=5 if index % 4 else 500)
        clock.now += 10  # a ttl of 5 is past: still stored (no sweep is due)
        await state.set("other", "x", 1)  # runs the periodic stream-log trim, which a plain batch never does
        taken = spy_plain(backend, disable=not plain)
        calls = [functools.partial(state.set, "s", f"k{i}", {"i": i}) for i in range(150)]
        outcomes = await together([functools.partial(state.set, "s", "first", 0), *calls])
        entries = [(e.key, e.value, e.version, e.expires_at) for e in await state.items("s")]
    return outcomes, entries, stored_rows(path), taken


async def test_a_batch_of_distinct_sets_is_written_in_one_pass_as_the_transaction_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of sets of distinct keys of one scope, run once with the plain path and once through the
    # transaction only
    simple = spy_form(monkeypatch, "_run_simple_sets")
    outcomes, entries, _ = await both_ways(tmp_path, distinct_sets)
    # Then the batch took the one-pass form
    assert simple == [True]
    # And every caller got the same answer, and the same rows are left
    assert outcomes[1 + 0] == (0, {"i": 0}, 2)  # live
    assert outcomes[1 + 3] == (None, {"i": 3}, 1)  # expired (ttl 5), so absent
    assert outcomes[1 + 5] == ({"old": 4}, {"i": 5}, 2)  # live (ttl 500): its expiry is dropped by a set
    assert outcomes[1 + 120] == (None, {"i": 120}, 1)  # absent
    assert ("k5", {"i": 5}, 2, None) in entries


async def test_a_batch_with_a_key_twice_or_a_ttl_leaves_the_one_pass_form_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batches the one-pass form does not take: a key set twice, a ttl, two scopes
    simple = spy_form(monkeypatch, "_run_simple_sets")
    async with StateManager.from_url(f"sqlite:///{tmp_path}/s.db") as state:
        await state.set("s", "warm", 1)
        # (each batch such that whichever of its first calls commits alone, what is queued is not such a batch)
        twice = await together([functools.partial(state.set, "s", key, i) for i, key in enumerate("abab")])
        ttl = await together([functools.partial(state.set, "s", key, 1, ttl=60) for key in "cde"])
        scopes = await together(
            [
                functools.partial(state.set, scope, key, 3)
                for key, scope in (("g", "s"), ("g", "t"), ("h", "s"), ("h", "t"))
            ]
        )
        # Then each was handed to the general form, nothing written by the one pass, and answered as ever
        assert len(simple) >= 3 and not any(simple)
        assert twice[2] == (0, 2, 2) and twice[3] == (1, 3, 2)
        assert ttl[2] == (None, 1, 1) and scopes[3] == (None, 3, 1)
        assert await state.get("s", "a") == 2 and await state.get("t", "h") == 3


async def too_big(url: str, *, plain: bool) -> tuple[list[str], list[Any], list[bool], Any]:
    """A batch of sets in which one value is too big for SQLite (its limit lowered on the writing connection)."""
    async with StateManager.from_url(url) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "warm", 1)
        taken = spy_plain(backend, disable=not plain)
        connection = backend._connection(inline=True)
        connection.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)
        sizes = (("k1", 1), ("k2", 1), ("big", 2000), ("k3", 1))
        results = await asyncio.gather(
            *(deferred(backend.set, "s", key, size * b"1", ttl=None, if_version=None) for key, size in sizes),
            return_exceptions=True,
        )
        left = [(e.key, e.version) for e in await state.items("s")]
        return [type(result).__name__ for result in results], left, taken, connection.hook.rows


async def test_a_batch_of_sets_that_sqlite_refuses_leaves_nothing_and_runs_the_usual_way(tmp_path: Path) -> None:
    # Given a batch of sets that SQLite refuses, with the plain path and without
    fast = await too_big(f"sqlite:///{tmp_path}/fast.db", plain=True)
    slow = await too_big(f"sqlite:///{tmp_path}/slow.db", plain=False)
    # Then the plain path gave the batch back (rolled back, its rows hook cleared), and the usual path answered
    # it as it always has: the same errors, the same rows left
    assert fast[2] == [False] and fast[3] is None
    assert fast[:2] == slow[:2]
    assert fast[0][0] == "WriteResult" and "StateBackendError" in fast[0]


def test_a_batchs_final_rows_are_written_whether_the_file_has_them_or_not(tmp_path: Path) -> None:
    # Given a file holding three rows, and a batch's final rows: two of them rewritten, one deleted, new ones (more
    # than one multi-row upsert holds, with and without an expiry)
    connection = sqlite3.connect(tmp_path / "rows.db", isolation_level=None)
    connection.execute(
        "CREATE TABLE motia_state (scope TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
        " version INTEGER NOT NULL, expires_at REAL, PRIMARY KEY (scope, key)) WITHOUT ROWID"
    )
    connection.executemany(
        "INSERT INTO motia_state VALUES ('s', ?, ?, 1, ?)", [("a", b"1", None), ("b", b"2", 5.0), ("c", b"3", None)]
    )
    dirty: dict[tuple[str, str], Any] = {
        ("s", "a"): Record("a", b"10", 2, 9.0),
        ("s", "b"): Record("b", b"20", 2, None),
        ("s", "c"): None,
    }
    news = [Record(f"n{i:03}", b"%d" % i, 1, None if i % 3 else float(i)) for i in range(plain._MAX_ROWS + 3)]
    dirty.update({("t", record.key): record for record in news})
    # When they are written
    plain._write_rows(connection, dirty)
    # Then the file holds exactly the batch's rows
    assert connection.execute("SELECT key, value, version, expires_at FROM motia_state ORDER BY key").fetchall() == [
        ("a", b"10", 2, 9.0),
        ("b", b"20", 2, None),
        *[tuple(record) for record in news],
    ]
    connection.close()
