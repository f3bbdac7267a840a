"""A group-committed batch of sets without ``if_version`` while events are on is written without the transaction's
per-call bookkeeping (issue 15, :mod:`motia.state.backends.sqlite.recorded_batch`). It must answer every caller,
record every event (outbox rows or direct deliveries: types, values, versions, timestamps, traces, seq order) and
leave every row exactly as the transaction path does; and hand back any batch it cannot write."""

from __future__ import annotations

import contextlib
import functools
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from motia import StateManager
from motia.state.backends.sqlite import SQLiteBackend, recorded_batch, writer
from motia.state.backends.types import Subscription
from motia.state.observe import current_trace
from tests.state.backends._batches import rows, stored_rows, together

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
WATCH = [Subscription("watcher", "s")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def spy(monkeypatch: pytest.MonkeyPatch, *, disable: bool) -> list[bool]:
    """Record, per batch offered to the recorded batch of sets, whether it ran there (``disable``: never)."""
    taken: list[bool] = []
    recorded_sets = recorded_batch.recorded_sets

    def recording(*args: Any) -> list[Any] | None:
        outcomes = None if disable else recorded_sets(*args)
        taken.append(outcomes is not None)
        return outcomes

    monkeypatch.setattr(writer, "recorded_sets", recording)
    return taken


async def traced(call: Callable[[], Awaitable[Any]]) -> Any:
    current_trace.set(TRACE)  # this task's context only
    return await call()


async def scripted(path: Path, monkeypatch: pytest.MonkeyPatch, *, fast: bool, subscribed: bool) -> list[Any]:
    """One scripted run over keys live, expired and absent, in batches of sets (one with a conditional set,
    which the recorded batch hands back); what every caller got, the events recorded, the rows left, and
    which batches the recorded batch took."""
    clock = Clock()
    with monkeypatch.context() as patch:
        async with StateManager.from_url(f"sqlite:///{path}", clock=clock, sweep_interval=3600) as state:
            backend = state.backend
            assert isinstance(backend, SQLiteBackend)
            await backend.enable_events()
            if subscribed:
                await backend.dispatch_events(WATCH)  # registers it: groups make their deliveries directly
            await state.set("s", "a", {"n": 1})
            await state.set("s", "expired", {"n": 5}, ttl=5)
            await state.set("s", "versioned", "v1")
            await state.set("other", "o", 1)
            clock.now += 10  # "expired" is past its ttl, still stored (no sweep is due)
            await state.set("other", "x", 1)  # runs the periodic stream-log trim, which the batch never does
            if subscribed:
                await backend.dispatch_events(WATCH)  # the lone writes' outbox rows: delivered first
            taken = spy(patch, disable=not fast)
            backend._inline_writes = False  # every write queues: each together() below is one batch
            first = await together(
                [
                    lambda: state.set("s", "a", {"n": 2}),
                    lambda: traced(lambda: state.set("s", "a", {"n": 3}, ttl=60)),  # sees the set before it
                    lambda: state.set("s", "expired", {"n": 50}),  # expired, then created
                    lambda: traced(lambda: state.set("s", "fresh", [1])),
                    lambda: state.set("s", "fresh", [2], ttl=30),
                    lambda: state.set("s", "fresh", [3]),  # back to no expiry: the order of kinds kept
                    lambda: state.set("other", "o", 2),
                ]
            )
            second = await together(
                [
                    lambda: state.set("s", "versioned", "no", if_version=99),  # a conflict: fails alone
                    lambda: state.set("s", "versioned", "v2", if_version=1),
                    lambda: state.set("s", "a", {"n": 4}),
                ]
            )
            entries = [(e.key, e.value, e.version, e.expires_at) for e in await state.items("s")]
    events = rows(
        path,
        "SELECT seq, event_type, scope, key, old_value, new_value, version, timestamp, trace"
        " FROM motia_state_events ORDER BY seq",
    )
    deliveries = rows(
        path, "SELECT id, step, kind, payload, order_key, available_at FROM motia_deliveries ORDER BY seq"
    )
    state_rows = stored_rows(path)
    return [first, second, entries, events, deliveries, state_rows, taken]


@pytest.mark.parametrize("subscribed", [False, True], ids=["outbox", "direct"])
async def test_a_recorded_batch_answers_records_and_writes_as_the_transaction_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, subscribed: bool
) -> None:
    # Given the same script run once with the recorded batch and once through the transaction only
    fast = await scripted(tmp_path / "fast.db", monkeypatch, fast=True, subscribed=subscribed)
    slow = await scripted(tmp_path / "slow.db", monkeypatch, fast=False, subscribed=subscribed)
    # Then the recorded batch took the batch of sets and handed back the one with if_version
    assert fast[6] == [True, False]
    assert slow[6] == [False, False]
    # And every caller got the same answer, the same events were recorded and the same rows are left
    for index in range(6):
        assert fast[index] == slow[index], index
    first, second, entries, events, deliveries, _, _ = fast
    assert first[:3] == [({"n": 1}, {"n": 2}, 2), ({"n": 2}, {"n": 3}, 3), (None, {"n": 50}, 1)]
    assert second[0][0] == "StateConflictError"
    assert ("expired", {"n": 50}, 1, None) in entries
    recorded = events if not subscribed else deliveries
    assert recorded, "the batch recorded its events"
    if not subscribed:
        kinds = [(row[1], row[3], row[8]) for row in events if row[7] == 1_000_010.0 and row[2] == "s"]
        assert kinds[:7] == [
            ("expired", "expired", None),  # first, as the transaction's read of the scope finds it
            ("updated", "a", None),
            ("updated", "a", TRACE),
            ("created", "expired", None),
            ("created", "fresh", TRACE),
            ("updated", "fresh", None),
            ("updated", "fresh", None),
        ]
        batch = [row for row in events if row[7] == 1_000_010.0 and row[2] == "s"]
        assert [row[4] is None for row in batch] == [row[1] == "created" for row in batch]  # stored NULL, not b""
        assert [row[5] is None for row in batch] == [row[1] == "expired" for row in batch]
    else:
        assert not [row for row in events if row[7] == 1_000_010.0 and row[2] == "s"]  # nothing via the outbox
        assert [row[0].split(":")[0] for row in deliveries] == ["state"] * len(deliveries)
        assert any(TRACE.encode() in row[3] for row in deliveries)


async def test_a_recorded_batch_never_runs_while_events_are_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = spy(monkeypatch, disable=False)
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'off.db'}") as state:
        await together([functools.partial(state.set, "s", f"k{i}", i) for i in range(5)])
        assert await state.get("s", "k4") == 4
    assert taken == []
    assert rows(tmp_path / "off.db", "SELECT count(*) FROM motia_state_events") == [(0,)]


async def test_a_recorded_batch_that_sqlite_refuses_changes_nothing_and_the_transaction_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given events on, and a file whose own trigger refuses one key (as a full disk or a corrupt page would fail)
    path = tmp_path / "bad.db"
    taken = spy(monkeypatch, disable=False)
    async with StateManager.from_url(f"sqlite:///{path}") as state:
        await state.backend.enable_events()
        await state.set("s", "before", 0)
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON motia_state WHEN NEW.key = 'bad'"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        state.backend._inline_writes = False  # type: ignore[attr-defined]  # the three writes are one batch
        # When a batch of sets writes it
        outcomes = await together(
            [lambda: state.set("s", "good", 1), lambda: state.set("s", "bad", 2), lambda: state.set("s", "ok", 3)]
        )
        # Then the recorded batch handed it back (rolled back), and the transaction failed it as it does
        assert taken == [False]
        assert [outcome[0] for outcome in outcomes] == ["StateBackendError"] * 3
        assert "refused" in outcomes[1][1]
        assert await state.keys("s") == ["before"]
    assert [key for (key,) in rows(path, "SELECT key FROM motia_state_events ORDER BY seq")] == ["before"]


async def test_a_groups_outbox_rows_number_on_from_the_counter_and_the_newest_row(tmp_path: Path) -> None:
    # Given events on and no subscription (a group's events go to the outbox), one outbox row, and the seq counter
    # (direct deliveries, emptied outboxes) past it
    path = tmp_path / "seqs.db"
    async with StateManager.from_url(f"sqlite:///{path}") as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await backend.enable_events()
        await state.set("s", "lone", 0)
        with contextlib.closing(sqlite3.connect(path)) as connection:
            connection.execute("UPDATE motia_meta SET value = '1000' WHERE name = 'event_seq'")
            connection.commit()
        backend._inline_writes = False  # every write queues: each together() below is one batch
        # When two groups of 70 sets commit (more rows than one statement writes)
        await together([functools.partial(state.set, "s", f"k{i}", i) for i in range(70)])
        await together([functools.partial(state.set, "t", f"k{i}", -i) for i in range(70)])
    # Then the first group's rows follow the counter, the second's the newest row: one seq each, in the calls' order
    events = rows(path, "SELECT seq, event_type, scope, key, new_value, version FROM motia_state_events ORDER BY seq")
    assert events[0][0] < 1000 and events[0][2:4] == ("s", "lone")
    assert events[1:] == [(1001 + i, "created", "s", f"k{i}", b"%d" % i, 1) for i in range(70)] + [
        (1071 + i, "created", "t", f"k{i}", b"%d" % -i, 1) for i in range(70)
    ]
