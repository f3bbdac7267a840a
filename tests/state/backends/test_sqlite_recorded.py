"""A lone SQLite write while events are on is one statement that writes the row and its outbox rows
(issue 15, :mod:`motia.state.backends.sqlite.recorded`). Its events must be exactly those of the transaction
it replaces, and a crash must never leave a write without its event, nor an event without its write."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motia import StateManager
from motia.exceptions import InvalidUpdateError
from motia.state.backends.base import Subscription
from motia.state.backends.sqlite import SQLiteBackend, writer
from motia.state.observe import current_trace

CHILD = Path(__file__).with_name("_child_recorded_writer.py")
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
INCREMENT = [{"type": "increment", "path": "n", "value": 1}]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _statements(backend: SQLiteBackend) -> list[str]:
    """Every statement the loop thread's connection runs from now on, as traced: a statement with triggers is
    traced again for each statement of its trigger, with its own text (see :func:`_executed`)."""
    statements: list[str] = []
    backend._connection(inline=True).set_trace_callback(statements.append)
    return statements


def _executed(traced: list[str]) -> list[str]:
    """The statements executed, from their trace: repeats in a row are one (the trace holds the values
    bound, and no two writes here bind the same)."""
    return [sql for sql, _ in itertools.groupby(traced)]


def _outbox(path: Path) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(
            "SELECT seq, event_type, scope, key, old_value, new_value, version, timestamp, trace"
            " FROM motia_state_events ORDER BY seq"
        ).fetchall()
    finally:
        connection.close()


async def _write_everything(path: Path, *, lone: bool) -> tuple[list[Any], list[tuple[Any, ...]]]:
    """The same writes, on a fresh store with events on, as lone statements or each in a transaction;
    returns their results, then the outbox rows and the rows they left."""
    clock = Clock(1000.0)
    state = StateManager(SQLiteBackend(path, clock=clock, sweep_interval=3600))
    backend = state.backend
    assert isinstance(backend, SQLiteBackend)
    results: list[Any] = []
    try:
        await state.set("s", "first", 0)  # the first write trims and sweeps, in a transaction
        await backend.enable_events()
        await state.set("s", "live", {"n": 1}, ttl=60)
        await state.set("s", "expired", {"n": 1}, ttl=1)
        await state.set("s", "upd-expired", {"n": 5}, ttl=1)
        await state.set("s", "del-live", {"n": 1})
        await state.set("s", "del-expired", {"n": 1}, ttl=1)
        clock.now += 2
        statements = _statements(backend)
        token = current_trace.set(TRACE)
        try:
            results.append(await state.set("s", "live", {"n": 2}))  # over a live row
            results.append(await state.set("s", "expired", {"n": 2}, ttl=30))  # over an expired row
            results.append(await state.set("s", "fresh", {"n": 1}))  # no row
            results.append(await state.update("s", "live", INCREMENT))  # a live row, its expiry kept
            results.append(await state.update("s", "live", INCREMENT, ttl=10))  # renewed
            results.append(await state.update("s", "upd-expired", INCREMENT))  # an expired row: transaction
            results.append(await state.update("s", "absent", INCREMENT))  # no row: transaction
            results.append(await state.delete("s", "del-live"))
            results.append(await state.delete("s", "del-expired"))
            results.append(await state.delete("s", "nothing"))
        finally:
            current_trace.reset(token)
        if lone:
            writes = _executed(statements)
            # Then each write was one statement, but for those over an expired row (whose ``expired`` event
            # comes first) and the update of an absent key: each wrote nothing and fell back to a transaction
            recorded = [sql.split(" VALUES")[0] for sql in writes if "_recorded" in sql]
            assert recorded == [
                "INSERT INTO motia_set_recorded",
                "INSERT INTO motia_set_recorded",  # the expired row: aborts, falls back
                "INSERT INTO motia_set_recorded",
                "INSERT INTO motia_update_recorded",
                "INSERT INTO motia_update_recorded",
                "INSERT INTO motia_update_recorded",  # the expired row: writes nothing, falls back
                "INSERT INTO motia_update_recorded",  # no row: the same
                "INSERT INTO motia_delete_recorded",
                "INSERT INTO motia_delete_recorded",
                "INSERT INTO motia_delete_recorded",
            ]
            assert sum(sql == "BEGIN IMMEDIATE" for sql in writes) == 3
        rows = [(entry.key, entry.value, entry.version, entry.expires_at) async for entry in _entries(state)]
        return [_result(result) for result in results], [*_outbox(path), *rows]
    finally:
        await state.aclose()


async def _entries(state: StateManager) -> Any:
    for key in await state.keys("s"):
        entry = await state.get_entry("s", key)
        assert entry is not None
        yield entry


def _result(result: Any) -> Any:
    if result is None or isinstance(result, dict | int):
        return result
    return (result.old_value, result.new_value, result.version)


async def test_lone_writes_with_events_record_exactly_the_events_of_a_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the same writes made as lone statements, and (the reference) each in a transaction, as before
    lone = await _write_everything(tmp_path / "lone.db", lone=True)
    monkeypatch.setattr(writer, "_LONE_EVENT_WRITES", {})
    reference = await _write_everything(tmp_path / "transaction.db", lone=False)
    # Then their results, events (type, values, version, timestamp, trace, seq order) and rows are the same
    assert lone[0] == reference[0]
    assert lone[1] == reference[1]
    events = [row[1:4] for row in lone[1] if len(row) == 9]
    assert ("expired", "s", "expired") in events and ("created", "s", "expired") in events
    assert ("deleted", "s", "del-live") in events and ("expired", "s", "del-expired") in events
    assert all(row[8] == TRACE for row in lone[1] if len(row) == 9 and row[7] == 1002.0)


async def test_a_lone_recorded_write_wakes_the_dispatcher_and_is_delivered(tmp_path: Path) -> None:
    async with StateManager.from_url(f"sqlite:///{tmp_path / 'd.db'}") as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await backend.enable_events()
        await state.set("s", "first", 0)  # the connection makes its views on its first such write
        await backend.dispatch_events([Subscription("watcher", "s")])  # direct mode: nothing waits
        woken = asyncio.Event()
        backend.add_listener(woken.set)
        statements = _statements(backend)
        # When one write commits alone
        await state.set("s", "k", {"n": 1})
        # Then it was the one statement, the dispatcher is woken, and its next dispatch moves the event
        assert [sql.split(" VALUES")[0] for sql in _executed(statements)] == ["INSERT INTO motia_set_recorded"]
        assert woken.is_set()
        assert await backend.dispatch_events([Subscription("watcher", "s")]) == 1
        assert await backend.pending("watcher") == 2


def _kill(child: subprocess.Popen[str]) -> str:
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.stdout is not None and child.stderr is not None
    out = child.stdout.read()
    child.stdout.close()
    child.stderr.close()
    return out


@pytest.mark.parametrize("seed", [1, 2])
async def test_kill_9_never_leaves_a_lone_write_without_its_event(
    tmp_path: Path, child_env: dict[str, str], seed: int
) -> None:
    db = tmp_path / "crash.db"
    # Given a process writing lone sets and updates with events on as fast as it can
    child = subprocess.Popen(
        [sys.executable, str(CHILD), f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    # When it is killed at a random moment
    await asyncio.sleep(random.Random(seed).uniform(0.2, 0.6))
    acked = [int(line.split()[1]) for line in _kill(child).splitlines() if line.startswith("ack ")]
    # Then every acknowledged write is there, and every write there has its event and no event lacks its write
    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        keys = {key for (key,) in connection.execute("SELECT key FROM motia_state WHERE scope = 'crash'")}
        created = [
            key
            for (key,) in connection.execute(
                "SELECT key FROM motia_state_events WHERE scope = 'crash' AND event_type = 'created'"
            )
        ]
        assert {f"k{i:06d}" for i in acked} <= keys
        assert sorted(created) == sorted(keys)
        (version,) = connection.execute("SELECT version FROM motia_state WHERE scope = 'count'").fetchone()
        versions = [v for (v,) in connection.execute("SELECT version FROM motia_state_events WHERE scope = 'count'")]
        assert versions == list(range(1, version + 1))
    finally:
        connection.close()


async def test_a_lone_update_with_events_that_fails_on_the_stored_value_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    async with StateManager(SQLiteBackend(path, sweep_interval=3600)) as state:
        await state.backend.enable_events()
        await state.set("s", "k", {"n": "text"})
        before = _outbox(path)
        # When an update's operation cannot apply to the stored value (it fails inside the write statement)
        with pytest.raises(InvalidUpdateError):
            await state.update("s", "k", INCREMENT)
        # Then neither the row nor the outbox changed, and the store writes on as usual
        entry = await state.get_entry("s", "k")
        assert entry is not None and (entry.value, entry.version) == ({"n": "text"}, 1)
        assert _outbox(path) == before
        assert (await state.update("s", "k", [{"type": "set", "path": "n", "value": 1}])).version == 2
        assert [row[1:7] for row in _outbox(path)][-1] == ("updated", "s", "k", b'{"n":"text"}', b'{"n":1}', 2)
