"""A lone SQLite write while events are off commits without a transaction (issue 15): in one statement
that hands the row it replaces to Python, or by compare-and-set after a read. It must write only over the
row it read, follow the rules of a transactional write (versions, expiry), and never skip an event another
process has switched on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest

from motia import StateManager
from motia.exceptions import InvalidUpdateError, StateConflictError
from motia.state.backends.base import Subscription
from motia.state.backends.sqlite import SQLiteBackend
from motia.state.backends.sqlite.keyvalue import FALLBACK, _compare_and_set, _lone_set
from motia.state.backends.types import Record


async def test_a_write_after_another_process_enabled_events_records_its_event(sqlite_url: str) -> None:
    # Given a store written by one process while events were off (it knows them to be off)
    async with StateManager.from_url(sqlite_url) as writer, StateManager.from_url(sqlite_url) as app:
        await writer.set("s", "k", 1)
        assert isinstance(writer.backend, SQLiteBackend) and not writer.backend._events_enabled
        # When another process (a second store on the file) switches events on, and the first writes again
        await app.backend.enable_events()
        await writer.set("s", "k", 2)
        await writer.update("s", "k", [{"type": "increment", "path": "", "value": 1}])
        # Then both writes recorded their events: the compare-and-set saw the flag and refused
        assert await app.backend.dispatch_events([Subscription("watcher")]) == 2
        claimed = await app.backend.claim(["watcher"], owner="w", limit=10, lease=60)
        payloads = [orjson.loads(d.payload) for d in claimed]
        assert [(p["old_value"], p["new_value"]) for p in payloads] == [(1, 2)]  # one at a time per key
        assert await writer.get("s", "k") == 3


def test_compare_and_set_writes_only_over_the_row_it_read(sqlite_path: Path, sqlite_url: str) -> None:
    async def setup() -> None:
        async with StateManager.from_url(sqlite_url) as state:
            await state.set("s", "k", {"n": 1})
            await state.set("s", "other", {"n": 1})

    asyncio.run(setup())
    connection = sqlite3.connect(sqlite_path, isolation_level=None)
    try:
        row = connection.execute("SELECT value, version, expires_at FROM motia_state WHERE key = 'k'").fetchone()
        # Given the row changed after it was read (another writer: same version, other bytes; then absent)
        connection.execute("UPDATE motia_state SET value = ? WHERE key = 'k'", (b'{"n":9}',))
        # Then the compare-and-set writes nothing, over a changed row or over a key that appeared
        assert not _compare_and_set(connection, "s", "k", row, Record("k", b'{"n":2}', 2, None))
        assert not _compare_and_set(connection, "s", "other", None, Record("other", b'{"n":2}', 1, None))
        assert connection.execute("SELECT value, version FROM motia_state WHERE key = 'k'").fetchone() == (
            b'{"n":9}',
            1,
        )
        # And over the row as read, it writes
        current = connection.execute("SELECT value, version, expires_at FROM motia_state WHERE key = 'k'").fetchone()
        assert _compare_and_set(connection, "s", "k", current, Record("k", b'{"n":2}', 2, None))
        assert connection.execute("SELECT value, version FROM motia_state WHERE key = 'k'").fetchone() == (
            b'{"n":2}',
            2,
        )
    finally:
        connection.close()


async def test_a_lone_write_that_lost_a_race_runs_in_a_transaction_and_reports_the_real_old_value(
    sqlite_url: str, sqlite_path: Path
) -> None:
    # Given a lone conditional set (it reads the row, then writes by compare-and-set) whose row another
    # process changes between its read and its write
    async with StateManager.from_url(sqlite_url) as state:
        await state.set("s", "k", "first")
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        other = sqlite3.connect(sqlite_path, isolation_level=None)
        raced = 0

        class Racing:
            """The inline connection, with another writer slipping in after the read of ``k``."""

            def __init__(self, inner: sqlite3.Connection) -> None:
                self.inner = inner

            def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> sqlite3.Cursor:
                nonlocal raced
                cursor = self.inner.execute(sql, parameters)
                if sql.startswith("SELECT value, version") and raced == 0:
                    raced += 1
                    other.execute("UPDATE motia_state SET value = ?, version = 5 WHERE key = 'k'", (b'"race"',))
                return cursor

        try:
            racing = Racing(backend._connection(inline=True))
            outcome = _lone_set(backend, racing, 0.0, None, "s", "k", b'"mine"', None, 1)  # type: ignore[arg-type]
        finally:
            other.close()
        # Then the compare-and-set declined, and the write through the store sees the racer's row
        assert outcome is FALLBACK
        result = await state.set("s", "k", "mine")
        assert (result.old_value, result.version) == ("race", 6)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _statements(backend: SQLiteBackend) -> list[str]:
    """Record every statement the loop thread's connection runs from now on."""
    statements: list[str] = []
    backend._connection(inline=True).set_trace_callback(statements.append)
    return statements


async def test_a_lone_set_is_one_statement_and_reports_the_row_it_replaced(sqlite_path: Path) -> None:
    clock = Clock(1000.0)
    async with StateManager(SQLiteBackend(sqlite_path, clock=clock, sweep_interval=3600)) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "first", 0)  # the first write trims and sweeps, in a transaction
        await state.set("s", "live", {"n": 1}, ttl=60)
        await state.set("s", "expired", {"n": 1}, ttl=1)
        clock.now += 2
        statements = _statements(backend)
        # When lone sets replace a live row, an expired row and no row
        live = await state.set("s", "live", {"n": 2})
        expired = await state.set("s", "expired", {"n": 2}, ttl=30)
        fresh = await state.set("s", "fresh", {"n": 1})
        # Then each was one statement, no transaction
        assert len(statements) == 3 and all(sql.startswith("INSERT INTO motia_state") for sql in statements)
        # And each reports what it replaced as a transaction would: the live row's value and next version,
        # the expired row as absent (version 1), nothing for a new key
        assert (live.old_value, live.new_value, live.version) == ({"n": 1}, {"n": 2}, 2)
        assert (expired.old_value, expired.version) == (None, 1)
        assert (fresh.old_value, fresh.version) == (None, 1)
        # And the rows hold what the results say, expiry included (set replaces it)
        entry = await state.get_entry("s", "live")
        assert entry is not None and (entry.version, entry.expires_at) == (2, None)
        entry = await state.get_entry("s", "expired")
        assert entry is not None and (entry.value, entry.version, entry.expires_at) == ({"n": 2}, 1, clock.now + 30)


async def test_a_lone_update_of_a_stored_key_is_one_statement_with_the_rules_of_a_transaction(
    sqlite_path: Path,
) -> None:
    clock = Clock(1000.0)
    increment = [{"type": "increment", "path": "n", "value": 1}]
    async with StateManager(SQLiteBackend(sqlite_path, clock=clock, sweep_interval=3600)) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "first", 0)
        await state.set("s", "kept", {"n": 1}, ttl=60)
        await state.set("s", "renewed", {"n": 1}, ttl=60)
        await state.set("s", "expired", {"n": 5}, ttl=1)
        clock.now += 2
        statements = _statements(backend)
        # When lone updates change a live row (keeping its expiry), renew one's expiry, and meet an expired row
        kept = await state.update("s", "kept", increment)
        renewed = await state.update("s", "renewed", increment, ttl=10)
        expired = await state.update("s", "expired", increment)
        # Then each was one statement
        assert len(statements) == 3 and all(sql.startswith("UPDATE motia_state") for sql in statements)
        # And each result and row follows the rules: the expired row counts as absent (starts from {})
        assert (kept.old_value, kept.new_value, kept.version) == ({"n": 1}, {"n": 2}, 2)
        assert (renewed.new_value, renewed.version) == ({"n": 2}, 2)
        assert (expired.old_value, expired.new_value, expired.version) == (None, {"n": 1}, 1)
        entries = {key: await state.get_entry("s", key) for key in ("kept", "renewed", "expired")}
        assert {key: (e.value, e.version, e.expires_at) for key, e in entries.items() if e is not None} == {
            "kept": ({"n": 2}, 2, 1060.0),
            "renewed": ({"n": 2}, 2, clock.now + 10),
            "expired": ({"n": 1}, 1, None),
        }


async def test_a_lone_update_that_fails_on_the_stored_value_changes_nothing(sqlite_path: Path) -> None:
    async with StateManager(SQLiteBackend(sqlite_path, sweep_interval=3600)) as state:
        await state.set("s", "first", 0)
        await state.set("s", "k", {"n": "text"})
        # When an update's operation cannot apply to the stored value (it fails inside the write statement)
        with pytest.raises(InvalidUpdateError):
            await state.update("s", "k", [{"type": "increment", "path": "n", "value": 1}])
        # Then nothing changed, and the store writes on as usual
        entry = await state.get_entry("s", "k")
        assert entry is not None and (entry.value, entry.version) == ({"n": "text"}, 1)
        assert (await state.update("s", "k", [{"type": "set", "path": "n", "value": 1}])).version == 2


async def test_a_lone_delete_is_one_statement_with_the_results_of_a_transaction(sqlite_path: Path) -> None:
    clock = Clock(1000.0)
    async with StateManager(SQLiteBackend(sqlite_path, clock=clock, sweep_interval=3600)) as state:
        backend = state.backend
        assert isinstance(backend, SQLiteBackend)
        await state.set("s", "first", 0)  # the first write trims and sweeps, in a transaction
        await state.set("s", "live", {"n": 1})
        await state.set("s", "expired", {"n": 2}, ttl=1)
        clock.now += 2
        statements = _statements(backend)
        # When lone deletes remove a live row, an expired row and no row
        live = await state.delete("s", "live")
        expired = await state.delete("s", "expired")
        absent = await state.delete("s", "absent")
        # Then the first two were one statement each, no transaction (the third also read the events flag)
        assert [sql.split()[0] for sql in statements] == ["DELETE", "DELETE", "DELETE", "SELECT"]
        # And each answered as a transaction does: the live value, nothing for the expired row or no row
        assert (live, expired, absent) == ({"n": 1}, None, None)
        # And both rows are gone, the expired one included
        assert sqlite3.connect(sqlite_path).execute("SELECT key FROM motia_state WHERE scope = 's'").fetchall() == [
            ("first",)
        ]


async def test_a_lone_delete_after_another_process_enabled_events_records_its_event(sqlite_url: str) -> None:
    # Given a process that believes events off, and another that switches them on
    async with StateManager.from_url(sqlite_url) as writer, StateManager.from_url(sqlite_url) as app:
        await writer.set("s", "k", 1)
        assert isinstance(writer.backend, SQLiteBackend) and not writer.backend._events_enabled
        await app.backend.enable_events()
        # When the first deletes a key, and a key that is not there
        assert await writer.delete("s", "k") == 1
        assert await writer.delete("s", "absent") is None
        # Then the delete recorded its event (the statement saw the flag and left it to the transaction)
        assert await app.backend.dispatch_events([Subscription("watcher")]) == 1
        claimed = await app.backend.claim(["watcher"], owner="w", limit=10, lease=60)
        assert [orjson.loads(d.payload)["old_value"] for d in claimed] == [1]
        assert await writer.get("s", "k") is None


async def test_a_lone_delete_with_if_version_runs_in_a_transaction(sqlite_path: Path) -> None:
    async with StateManager(SQLiteBackend(sqlite_path, sweep_interval=3600)) as state:
        await state.set("s", "k", "v")
        # When a delete names the version it expects, wrongly then rightly
        with pytest.raises(StateConflictError):
            await state.delete("s", "k", if_version=5)
        assert await state.get("s", "k") == "v"
        assert await state.delete("s", "k", if_version=1) == "v"
        # Then the wrong one changed nothing and the right one deleted
        assert await state.get("s", "k") is None
